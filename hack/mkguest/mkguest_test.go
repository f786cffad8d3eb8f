package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseImageDepends(t *testing.T) {
	// Output of `apt-cache depends linux-image-cloud-amd64` on Debian 12.
	out := "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n"
	pkg, release, ok := parseImageDepends([]byte(out))
	if !ok || pkg != "linux-image-6.1.0-56-cloud-amd64" || release != "6.1.0-56-cloud-amd64" {
		t.Fatalf("got %q %q %v", pkg, release, ok)
	}
	if _, _, ok := parseImageDepends([]byte("linux-image-cloud-amd64\n  Recommends: firmware\n")); ok {
		t.Fatal("found a kernel in output without Depends")
	}
}

func TestCheckStaticBinaryRefusesDynamic(t *testing.T) {
	// /bin/sh on Debian is dash, linked against libc.
	err := checkStaticBinary("/bin/sh")
	if err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Fatalf("/bin/sh: %v, want a dynamically-linked error", err)
	}
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkStaticBinary(junk); err == nil {
		t.Fatal("a script was accepted as an ELF binary")
	}
}

func TestMaybeGunzip(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("ARM64 Image"))
	zw.Close()
	for name, in := range map[string][]byte{"gzip": gz.Bytes(), "plain": []byte("ARM64 Image")} {
		r, err := maybeGunzip(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || string(got) != "ARM64 Image" {
			t.Fatalf("%s: %q, %v", name, got, err)
		}
	}
}

func TestNewestCachedKernel(t *testing.T) {
	cache := t.TempDir()
	for _, rel := range []string{"6.1.0-9-cloud-amd64", "6.1.0-56-cloud-amd64", "6.1.0-100-cloud-arm64", "6.2.0-1-cloud-amd64"} {
		dir := filepath.Join(cache, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if rel != "6.2.0-1-cloud-amd64" { // an interrupted unpack has no mark
			if err := os.WriteFile(filepath.Join(dir, ".unpacked"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, ok := newestCachedKernel(cache, "amd64")
	if !ok || got.Release != "6.1.0-56-cloud-amd64" || got.Root != filepath.Join(cache, "6.1.0-56-cloud-amd64", "root") {
		t.Fatalf("got %+v, %v", got, ok)
	}
	if _, ok := newestCachedKernel(t.TempDir(), "amd64"); ok {
		t.Fatal("found a kernel in an empty cache")
	}
}
