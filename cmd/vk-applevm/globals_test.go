package main

import "testing"

func TestStateRootPerPlatformAndUser(t *testing.T) {
	for _, c := range []struct {
		goos string
		euid int
		home string
		env  string
		want string
	}{
		{"darwin", 501, "/Users/ann", "", "/Users/ann/Library/Application Support/vk-applevm"},
		{"darwin", 0, "/var/root", "", "/var/lib/vk-applevm"},
		{"darwin", 501, "", "", "/var/lib/vk-applevm"},
		{"linux", 1000, "/home/ann", "", "/var/lib/vk-applevm"},
		{"darwin", 501, "/Users/ann", "/tmp/r", "/tmp/r"},
	} {
		if got := rootFor(c.goos, c.euid, c.home, c.env); got != c.want {
			t.Errorf("rootFor(%s, %d, %q, %q) = %q, want %q", c.goos, c.euid, c.home, c.env, got, c.want)
		}
	}
}
