package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

func TestServesBusybox(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrFile := filepath.Join(t.TempDir(), "addr")
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, "127.0.0.1:0", "busybox:1", addrFile, imagetest.DefaultCacheDir()) }()

	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-errc:
			t.Fatalf("testregistry exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("testregistry wrote no address file within 30 s")
		}
		b, _ := os.ReadFile(addrFile)
		addr = strings.TrimSpace(string(b))
	}

	ref, err := name.ParseReference(addr + "/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull from testregistry: %v", err)
	}
	gotDigest, err := got.Digest()
	if err != nil {
		t.Fatal(err)
	}
	wantDigest, err := imagetest.Busybox(t).Digest()
	if err != nil {
		t.Fatal(err)
	}
	if gotDigest != wantDigest {
		t.Errorf("served busybox %s, want %s", gotDigest, wantDigest)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("testregistry did not stop after cancel")
	}
}
