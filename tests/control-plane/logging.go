package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// benignErrors are error lines every fresh kube-apiserver logs while it
// bootstraps itself; they are not worth a reader's attention.
var benignErrors = [][]byte{
	// Lease and token-tracking controllers race the creation of kube-system.
	[]byte(`namespaces \"kube-system\" not found`),
	// Logged on every start with --endpoint-reconciler-type=none.
	[]byte(`Found stale data, removed previous endpoints on kubernetes service`),
}

// klogErrorWriter passes klog's error lines to stderr, minus benign ones,
// and nothing at all once silenced (during shutdown).
type klogErrorWriter struct{ quiet atomic.Bool }

func (w *klogErrorWriter) silence() { w.quiet.Store(true) }

func (w *klogErrorWriter) Write(p []byte) (int, error) {
	if w.quiet.Load() {
		return len(p), nil
	}
	for _, b := range benignErrors {
		if bytes.Contains(p, b) {
			return len(p), nil
		}
	}
	return os.Stderr.Write(p)
}

// setupLogging routes klog (used by the apiserver and the controllers):
// errors only by default, everything from verbosity 1 with --verbose.
func setupLogging(verbose bool) *klogErrorWriter {
	w := &klogErrorWriter{}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if verbose {
		_ = fs.Set("logtostderr", "true")
		_ = fs.Set("v", "1")
		return w
	}
	// With logtostderr off klog writes each severity to its "file" (and
	// also every lower severity's), and to stderr from stderrthreshold up.
	// The files are replaced by writers here, so klog creates none.
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	klog.SetOutputBySeverity("INFO", io.Discard)
	klog.SetOutputBySeverity("WARNING", io.Discard)
	klog.SetOutputBySeverity("ERROR", w)
	klog.SetOutputBySeverity("FATAL", io.Discard)
	return w
}
