package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// apiserverArgs are the kube-apiserver flags, as they would be given to the
// kube-apiserver binary.
func apiserverArgs(pk *pki, etcdURL string, port int) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--advertise-address=127.0.0.1",
		// The "kubernetes" Service's endpoints would point at a loopback
		// address, which Endpoints validation rejects; nothing in-cluster
		// needs to reach this apiserver through that Service.
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		"--client-ca-file=" + pk.caCertFile,
		"--tls-cert-file=" + pk.servingCertFile,
		"--tls-private-key-file=" + pk.servingKeyFile,
		"--cert-dir=" + pk.dir,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pk.saPubFile,
		"--service-account-signing-key-file=" + pk.saKeyFile,
		"--profiling=false",
	}
}

// startAPIServer configures the real kube-apiserver with the same option and
// flag code as the kube-apiserver binary, and runs it in a goroutine until
// ctx is cancelled. Its result is sent to done.
func startAPIServer(ctx context.Context, cfg *config, pk *pki, etcdURL string, ln net.Listener, done chan<- error) error {
	port := ln.Addr().(*net.TCPAddr).Port
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(apiserverArgs(pk, etcdURL, port)); err != nil {
		return err
	}
	// Serve on the listener we already hold, so the port is known up front.
	s.SecureServing.Listener = ln
	s.SecureServing.BindPort = port

	// As the kube-apiserver command does before running.
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})

	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("panic: %v", r)
			}
		}()
		done <- app.Run(ctx, completed)
	}()
	return nil
}
