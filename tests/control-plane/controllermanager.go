package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

type controllerManager struct {
	opts *kcmoptions.KubeControllerManagerOptions
}

// newControllerManager prepares the kube-controller-manager options from the
// same flags the binary takes. It must run before the apiserver options add
// their flags (see main).
func newControllerManager(cfg *config, pk *pki, url string) (*controllerManager, error) {
	kubeconfig := filepath.Join(pk.dir, "controller-manager.kubeconfig")
	if err := writeFile(kubeconfig, kubeconfigYAML(url, pk.caCertPEM, pk.kcmCertPEM, pk.kcmKeyPEM, "kube-controller-manager"), 0o600); err != nil {
		return nil, err
	}
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	nfs := s.Flags(kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases())
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + cfg.controllers,
		"--leader-elect=false",
		// No HTTP endpoint: nothing to serve, and nothing else listens.
		"--secure-port=0",
		"--bind-address=127.0.0.1",
		"--use-service-account-credentials=false",
		"--root-ca-file=" + pk.caCertFile,
		"--profiling=false",
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return &controllerManager{opts: s}, nil
}

// run starts the controllers and blocks until ctx is cancelled.
func (c *controllerManager) run(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	if err := c.opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	kc, err := c.opts.Config(ctx, kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases())
	if err != nil {
		return err
	}
	return kcmapp.Run(ctx, kc.Complete())
}
