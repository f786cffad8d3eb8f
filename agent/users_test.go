package agent

import (
	"slices"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

func TestUsersAndGroups(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken\napp:x:1000:1000::/home/app:/bin/sh\n"
	u, ok := findUser(strings.NewReader(passwd), 1000)
	if !ok || u.name != "app" || u.home != "/home/app" {
		t.Fatalf("user %+v %v", u, ok)
	}
	if _, ok := findUser(strings.NewReader(passwd), 5); ok {
		t.Fatal("found uid 5")
	}
	group := "app:x:1000:\nwheel:x:10:root,app\ndocker:x:999:bob, app\nbad:x:zz:app\n"
	if g := supplementaryGroups(strings.NewReader(group), "app"); !slices.Equal(g, []uint32{10, 999}) {
		t.Fatalf("groups %v", g)
	}
	if g := mergeGroups(1000, []uint32{10, 1000, 999}, []uint32{10, 4000}); !slices.Equal(g, []uint32{10, 999, 4000}) {
		t.Fatalf("merged %v", g)
	}
	if v, ok := envValue([]string{"A=1", "PATH=/x", "A=2"}, "A"); !ok || v != "2" {
		t.Fatalf("env %q %v", v, ok)
	}
}

func TestEtcFiles(t *testing.T) {
	hosts := renderHosts([]*api.HostEntry{{Ip: "10.0.0.5", Names: []string{"a", "b"}}, {Ip: "10.0.0.6"}})
	if !strings.HasPrefix(hosts, "# Managed") || !strings.Contains(hosts, "127.0.0.1\tlocalhost\n") || !strings.HasSuffix(hosts, "10.0.0.5\ta b\n") {
		t.Fatalf("hosts:\n%s", hosts)
	}
	resolv := renderResolvConf(&api.DNS{Nameservers: []string{"1.1.1.1", "8.8.8.8"}, Searches: []string{"a", "b"}, Options: []string{"ndots:5"}})
	if resolv != "nameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch a b\noptions ndots:5\n" {
		t.Fatalf("resolv.conf:\n%s", resolv)
	}
	if renderResolvConf(nil) != "" {
		t.Fatal("nil DNS")
	}
}

func TestResolveUser(t *testing.T) {
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n")
	group := []byte("root:x:0:\nstaff:x:50:user\nweb:x:33:\n")
	for _, tc := range []struct {
		spec     string
		uid, gid uint32
		err      string
	}{
		{"root", 0, 0, ""},
		{"user", 1000, 1000, ""},
		{"1000", 1000, 1000, ""},
		{"4242", 4242, 0, ""}, // numeric without a passwd entry
		{"user:staff", 1000, 50, ""},
		{"user:7", 1000, 7, ""},
		{"33:web", 33, 33, ""},
		{"nobody", 0, 0, "no such user"},
		{"user:nogroup", 0, 0, "no such group"},
		{":5", 0, 0, "want user[:group]"},
		{"user:", 0, 0, "want user[:group]"},
	} {
		uid, gid, err := resolveUser(tc.spec, passwd, group)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || uid != tc.uid || gid != tc.gid {
			t.Errorf("%q = %d:%d, %v; want %d:%d", tc.spec, uid, gid, err, tc.uid, tc.gid)
		}
	}
}
