package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

type etcdServer struct {
	e         *embed.Etcd
	level     zap.AtomicLevel
	clientURL string
}

// Close stops etcd. Its listeners report "server closed" errors while it
// stops, which are expected, so logging is silenced first.
func (s *etcdServer) Close() {
	s.level.SetLevel(zap.FatalLevel)
	s.e.Close()
}

func newEtcdLogger(level zap.AtomicLevel) (*zap.Logger, error) {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	return zap.Config{
		Level:            level,
		Encoding:         "console",
		EncoderConfig:    enc,
		OutputPaths:      []string{"stderr"},
		ErrorOutputPaths: []string{"stderr"},
	}.Build(
		zap.Fields(zap.String("component", "etcd")),
		zap.WrapCore(func(c zapcore.Core) zapcore.Core { return quietCore{c} }),
	)
}

// quietCore drops etcd messages that are expected and harmless here.
type quietCore struct{ zapcore.Core }

func (c quietCore) With(fields []zapcore.Field) zapcore.Core {
	return quietCore{c.Core.With(fields)}
}

func (c quietCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	switch e.Message {
	// A fresh member's storage-version monitor may run before the first
	// configuration change is applied ("missing confstate information");
	// it retries on its next run.
	case "failed to update storage version":
		return ce
	}
	return c.Core.Check(e, ce)
}

// startEtcd runs a single-member etcd inside this process. Its client
// listener is on a free port of 127.0.0.1. It has no peer listener: a
// single-member cluster never talks to peers, and the advertised peer URL is
// only metadata (kept constant so a re-used data dir restarts cleanly).
func startEtcd(ctx context.Context, dir string, verbose bool) (*etcdServer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "tether"
	cfg.Dir = dir
	client := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = nil
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// The JSON gateway is not needed (the apiserver speaks gRPC), and it
	// would dial the configured ":0" address.
	cfg.EnableGRPCGateway = false

	level := zap.NewAtomicLevelAt(zap.ErrorLevel)
	if verbose {
		level.SetLevel(zap.WarnLevel)
	}
	lg, err := newEtcdLogger(level)
	if err != nil {
		return nil, err
	}
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	// A throw-away test/dev store: skipping fsync makes writes much faster.
	// Data survives a killed process (the page cache is kept) but not a
	// machine crash.
	cfg.UnsafeNoFsync = true
	// A lone member elects itself after a random 1-10 election ticks; short
	// ticks take that from up to 1s (defaults 100ms/1000ms) to ~0.1s. There
	// are no peers whose heartbeats could suffer.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	// etcd's command line sets this default; embed.NewConfig leaves it at 0,
	// which would log every request as slow.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("not ready after 60s")
	case <-ctx.Done():
		e.Close()
		return nil, context.Cause(ctx)
	}
	if len(e.Clients) == 0 {
		e.Close()
		return nil, errors.New("no client listener")
	}
	return &etcdServer{e: e, level: level, clientURL: fmt.Sprintf("http://%s", e.Clients[0].Addr())}, nil
}
