// tether-control-plane runs a real upstream Kubernetes control plane in one
// process, without containers: embedded etcd, the kube-apiserver and the
// kube-controller-manager's garbage-collector, namespace and service-account
// controllers. It is meant for tests and local development.
//
// Usage:
//
//	tether-control-plane --data-dir DIR [--kubeconfig PATH] [--port N]
//	                     [--exit-with-stdin] [--verbose] [--controllers LIST]
//
// When the apiserver's /readyz is ok it writes an admin kubeconfig and prints
// exactly one line to stdout:
//
//	ready url=https://127.0.0.1:PORT kubeconfig=PATH startup=1.23s
//
// It stops cleanly on SIGTERM/SIGINT and, with --exit-with-stdin, when its
// standard input reaches end of file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

type config struct {
	dataDir       string
	kubeconfig    string
	port          int
	exitWithStdin bool
	removeDataDir bool
	verbose       bool
	controllers   string
}

func main() {
	os.Exit(run())
}

// stderr receives this program's own messages (see muteStderr).
var stderr io.Writer = os.Stderr

func logf(format string, args ...any) {
	fmt.Fprintf(stderr, "tether-control-plane: "+format+"\n", args...)
}

func parseFlags() (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("tether-control-plane", flag.ContinueOnError)
	fs.StringVar(&cfg.dataDir, "data-dir", "", "directory for etcd data, certificates and the kubeconfig (required; created if missing)")
	fs.StringVar(&cfg.kubeconfig, "kubeconfig", "", "where to write the admin kubeconfig (default <data-dir>/kubeconfig)")
	fs.IntVar(&cfg.port, "port", 0, "apiserver port on 127.0.0.1 (0 = pick a free port)")
	fs.BoolVar(&cfg.exitWithStdin, "exit-with-stdin", false, "exit when standard input reaches end of file")
	fs.BoolVar(&cfg.removeDataDir, "remove-data-dir-on-exit", false, "delete the data directory once everything has stopped (for throw-away test clusters)")
	fs.BoolVar(&cfg.verbose, "verbose", false, "log kube-apiserver, controller-manager and etcd info messages to stderr")
	fs.StringVar(&cfg.controllers, "controllers", "garbagecollector,namespace,serviceaccount", "kube-controller-manager controllers to run")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.dataDir == "" {
		return nil, errors.New("--data-dir is required")
	}
	if cfg.port < 0 || cfg.port > 65535 {
		return nil, fmt.Errorf("--port %d out of range", cfg.port)
	}
	abs, err := filepath.Abs(cfg.dataDir)
	if err != nil {
		return nil, err
	}
	cfg.dataDir = abs
	if cfg.kubeconfig == "" {
		cfg.kubeconfig = filepath.Join(cfg.dataDir, "kubeconfig")
	}
	if cfg.kubeconfig, err = filepath.Abs(cfg.kubeconfig); err != nil {
		return nil, err
	}
	return cfg, nil
}

func run() int {
	start := processStartTime()

	cfg, err := parseFlags()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		logf("%v", err)
		return 2
	}
	klogErrors := setupLogging(cfg.verbose)

	// Stop on SIGTERM/SIGINT, or when stdin closes if asked to.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if cfg.exitWithStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel(errors.New("stdin closed"))
		}()
	}
	// A second signal while shutting down forces the exit.
	go func() {
		<-ctx.Done()
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		<-sigs
		logf("second signal, exiting now")
		os.Exit(1)
	}()

	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		logf("creating data dir: %v", err)
		return 1
	}
	if err := lockDataDir(cfg.dataDir); err != nil {
		logf("%v", err)
		return 1
	}
	if cfg.removeDataDir {
		// Deferred first, so it runs last: after etcd and the apiserver stopped.
		defer func() {
			if err := os.RemoveAll(cfg.dataDir); err != nil {
				logf("removing data dir: %v", err)
			}
		}()
	}
	// A kubeconfig left by an earlier run names an old port: remove it, so
	// that whoever waits for the file only ever sees this run's.
	if err := os.Remove(cfg.kubeconfig); err != nil && !errors.Is(err, os.ErrNotExist) {
		logf("removing old kubeconfig: %v", err)
		return 1
	}
	pk, err := ensurePKI(filepath.Join(cfg.dataDir, "pki"))
	if err != nil {
		logf("certificates: %v", err)
		return 1
	}
	if cfg.verbose {
		logf("certificates ready after %s", since(start))
	}

	// etcd
	etcd, err := startEtcd(ctx, filepath.Join(cfg.dataDir, "etcd"), cfg.verbose)
	if err != nil {
		logf("etcd: %v", err)
		return 1
	}
	defer func() {
		etcd.Close()
		logf("etcd stopped")
	}()
	logf("etcd ready at %s after %s", etcd.clientURL, since(start))

	// kube-apiserver
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.port))
	if err != nil {
		logf("apiserver listener: %v", err)
		return 1
	}
	port := ln.Addr().(*net.TCPAddr).Port
	url := fmt.Sprintf("https://127.0.0.1:%d", port)

	// Controller-manager options register flags that adjust feature-gate
	// defaults, which must happen before the apiserver adds its flags.
	kcm, err := newControllerManager(cfg, pk, url)
	if err != nil {
		ln.Close()
		logf("controller-manager options: %v", err)
		return 1
	}

	apiCtx, apiCancel := context.WithCancel(context.Background())
	defer apiCancel()
	apiDone := make(chan error, 1)
	if err := startAPIServer(apiCtx, cfg, pk, etcd.clientURL, ln, apiDone); err != nil {
		ln.Close()
		logf("kube-apiserver: %v", err)
		return 1
	}

	status := 0
	var wg sync.WaitGroup
	kcmCtx, kcmCancel := context.WithCancel(context.Background())
	defer kcmCancel()

	if err := waitReady(ctx, url, pk, apiDone); err != nil {
		if ctx.Err() == nil {
			logf("kube-apiserver did not become ready: %v", err)
			status = 1
		}
	} else {
		logf("kube-apiserver ready at %s after %s", url, since(start))

		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := kcm.run(kcmCtx); err != nil {
				logf("controller-manager: %v", err)
			}
		}()

		if err := writeFile(cfg.kubeconfig, adminKubeconfig(url, pk), 0o600); err != nil {
			logf("writing kubeconfig: %v", err)
			status = 1
		} else {
			fmt.Fprintf(os.Stdout, "ready url=%s kubeconfig=%s startup=%.2fs\n", url, cfg.kubeconfig, time.Since(start).Seconds())
			_ = os.Stdout.Sync()
		}
		if status == 0 {
			select {
			case <-ctx.Done():
			case err := <-apiDone:
				logf("kube-apiserver stopped unexpectedly: %v", err)
				status = 1
				apiDone <- err
			}
		}
	}

	if cause := context.Cause(ctx); cause != nil && status == 0 {
		if errors.Is(cause, context.Canceled) {
			cause = errors.New("signal received")
		}
		logf("shutting down: %v", cause)
	}

	// Controllers first, then the apiserver, then (deferred) etcd. Errors
	// from components torn down mid-start-up are expected: silence them.
	klogErrors.silence()
	if !cfg.verbose {
		muteStderr()
	}
	kcmCancel()
	waitTimeout(&wg, 10*time.Second)
	apiCancel()
	select {
	case err := <-apiDone:
		if err != nil && status == 0 && !strings.Contains(err.Error(), "context canceled") {
			logf("kube-apiserver: %v", err)
		}
	case <-time.After(20 * time.Second):
		logf("kube-apiserver did not stop within 20s")
	}
	return status
}

func since(start time.Time) string {
	return time.Since(start).Round(10 * time.Millisecond).String()
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		logf("controller-manager did not stop within %s", d)
	}
}
