package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the paths and PEM material the control plane needs.
type pki struct {
	dir string

	caCertPEM []byte

	// Serving certificate of the kube-apiserver.
	servingCertFile, servingKeyFile string
	// CA bundle the apiserver trusts for client certificates.
	caCertFile string
	// Service-account token signing key pair.
	saKeyFile, saPubFile string

	// Client certificate for the admin kubeconfig (CN=tether-admin, O=system:masters).
	adminCertPEM, adminKeyPEM []byte
	// Client certificate for the embedded kube-controller-manager.
	kcmCertPEM, kcmKeyPEM []byte
}

// ensurePKI creates (or reuses) the CA and service-account key in dir and
// issues fresh leaf certificates on every start. Reusing the CA and the
// service-account key keeps a re-used data dir consistent: old kubeconfigs
// stay valid and previously issued service-account tokens still verify.
func ensurePKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{
		dir:             dir,
		caCertFile:      filepath.Join(dir, "ca.crt"),
		servingCertFile: filepath.Join(dir, "apiserver.crt"),
		servingKeyFile:  filepath.Join(dir, "apiserver.key"),
		saKeyFile:       filepath.Join(dir, "sa.key"),
		saPubFile:       filepath.Join(dir, "sa.pub"),
	}
	caKeyFile := filepath.Join(dir, "ca.key")

	caCert, caKey, err := loadCA(p.caCertFile, caKeyFile)
	if err != nil {
		caCert, caKey, err = newCA()
		if err != nil {
			return nil, fmt.Errorf("creating CA: %w", err)
		}
		keyPEM, err := encodeKey(caKey)
		if err != nil {
			return nil, err
		}
		if err := writeFile(caKeyFile, keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := writeFile(p.caCertFile, encodeCert(caCert.Raw), 0o644); err != nil {
			return nil, err
		}
	}
	p.caCertPEM = encodeCert(caCert.Raw)

	// Serving certificate for 127.0.0.1 and localhost.
	certPEM, keyPEM, err := issue(caCert, caKey, pkix.Name{CommonName: "kube-apiserver"},
		x509.ExtKeyUsageServerAuth,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		[]net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	if err := writeFile(p.servingKeyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(p.servingCertFile, certPEM, 0o644); err != nil {
		return nil, err
	}

	p.adminCertPEM, p.adminKeyPEM, err = issue(caCert, caKey,
		pkix.Name{CommonName: "tether-admin", Organization: []string{"system:masters"}},
		x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return nil, err
	}
	// The controller manager runs with its own identity; system:masters keeps
	// its root client independent of RBAC bootstrap timing.
	p.kcmCertPEM, p.kcmKeyPEM, err = issue(caCert, caKey,
		pkix.Name{CommonName: "system:kube-controller-manager", Organization: []string{"system:masters"}},
		x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return nil, err
	}

	if err := ensureSAKey(p.saKeyFile, p.saPubFile); err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	return p, nil
}

func loadCA(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("bad PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !cert.IsCA || time.Now().Add(30*24*time.Hour).After(cert.NotAfter) {
		return nil, nil, errors.New("unusable CA")
	}
	return cert, signer, nil
}

// newKeyAndTemplate makes an ECDSA P-256 key and the start of a certificate for
// it: a random serial number, valid from an hour ago for lifetime.
func newKeyAndTemplate(lifetime time.Duration) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	return key, &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(lifetime),
		BasicConstraintsValid: true,
	}, nil
}

func newCA() (*x509.Certificate, crypto.Signer, error) {
	key, tmpl, err := newKeyAndTemplate(10 * 365 * 24 * time.Hour)
	if err != nil {
		return nil, nil, err
	}
	tmpl.Subject = pkix.Name{CommonName: "tether-control-plane-ca"}
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	tmpl.IsCA = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// issue signs a new ECDSA P-256 leaf certificate with the CA.
// The key is returned as PKCS#8 ("PRIVATE KEY") PEM.
func issue(ca *x509.Certificate, caKey crypto.Signer, subject pkix.Name, usage x509.ExtKeyUsage, dns []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	key, tmpl, err := newKeyAndTemplate(365 * 24 * time.Hour)
	if err != nil {
		return nil, nil, err
	}
	tmpl.Subject = subject
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	tmpl.DNSNames = dns
	tmpl.IPAddresses = ips
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// ensureSAKey keeps an existing service-account signing key (so tokens
// issued before a restart still verify) or makes an ECDSA P-256 one (ES256;
// much faster to generate than RSA).
func ensureSAKey(keyFile, pubFile string) error {
	if b, err := os.ReadFile(keyFile); err == nil {
		if blk, _ := pem.Decode(b); blk != nil {
			if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
				switch k := k.(type) {
				case *ecdsa.PrivateKey:
					return writePub(pubFile, &k.PublicKey)
				case *rsa.PrivateKey:
					return writePub(pubFile, &k.PublicKey)
				}
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writePub(pubFile, &key.PublicKey)
}

func writePub(path string, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}

func randSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeFile writes data to a temporary file beside path and renames it into
// place, so a concurrent reader never sees a partially written file.
func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
