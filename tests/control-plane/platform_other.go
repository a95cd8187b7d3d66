//go:build !unix

package main

func muteStderr() {}

func lockDataDir(dir string) error { return nil }
