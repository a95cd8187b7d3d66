package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// waitReady polls the apiserver's /readyz with the admin client certificate
// until it answers 200 "ok".
func waitReady(ctx context.Context, url string, pk *pki, apiDone chan error) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pk.caCertPEM)
	cert, err := tls.X509KeyPair(pk.adminCertPEM, pk.adminKeyPEM)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
			DisableKeepAlives: false,
		},
	}
	defer client.CloseIdleConnections()

	deadline := time.After(3 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case err := <-apiDone:
			apiDone <- err // keep it for the shutdown path
			if err == nil {
				err = errors.New("exited")
			}
			return fmt.Errorf("kube-apiserver stopped: %w", err)
		case <-deadline:
			return fmt.Errorf("timed out; last /readyz: %s", last)
		case <-tick.C:
		}
	}
}

func adminKubeconfig(url string, pk *pki) []byte {
	return kubeconfigYAML(url, pk.caCertPEM, pk.adminCertPEM, pk.adminKeyPEM, "tether-admin")
}

func kubeconfigYAML(url string, caPEM, certPEM, keyPEM []byte, user string) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: tether
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: tether
  context:
    cluster: tether
    user: %s
current-context: tether
preferences: {}
`, url, b64(caPEM), user, b64(certPEM), b64(keyPEM), user))
}

// processStartTime is when the kernel started this process (so that package
// initialisation counts towards the reported start-up time). It falls back to
// now if /proc cannot be read.
func processStartTime() time.Time {
	now := time.Now()
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return now
	}
	uptime, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return now
	}
	// Field 22 (starttime, in clock ticks since boot) counted after the
	// command name, which is in parentheses and may contain spaces.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return now
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return now
	}
	ticks, err := strconv.ParseFloat(fields[19], 64)
	if err != nil {
		return now
	}
	up, err := strconv.ParseFloat(strings.Fields(string(uptime))[0], 64)
	if err != nil {
		return now
	}
	const clkTck = 100 // USER_HZ is 100 on every Linux architecture Go supports
	age := up - ticks/clkTck
	if age < 0 || age > 3600 {
		return now
	}
	return now.Add(-time.Duration(age * float64(time.Second)))
}
