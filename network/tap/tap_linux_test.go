package tap

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"testing"

	"github.com/vk-applevm/vk-applevm/network/netns"
)

func testNamespace(t *testing.T) string {
	t.Helper()
	testenv.Needs(t, "root (tap devices)")
	if os.Geteuid() != 0 {
		t.Fatal("tap devices need root (CAP_NET_ADMIN): run go test as root")
	}
	b := make([]byte, 4)
	rand.Read(b)
	path, err := netns.Create("vkavt-tap-" + hex.EncodeToString(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Remove(path) })
	return path
}

func interfaceIn(t *testing.T, nsPath, name string) (*net.Interface, error) {
	var ifc *net.Interface
	err := netns.Do(nsPath, func() error {
		var err error
		ifc, err = net.InterfaceByName(name)
		return err
	})
	return ifc, err
}

func TestCreateIsPersistentAndOpenAttaches(t *testing.T) {
	ns := testNamespace(t)
	if err := Create(ns, "vkttest0", os.Geteuid()); err != nil {
		t.Fatal(err)
	}
	// Persistent: it exists after Create closed its descriptor.
	if _, err := interfaceIn(t, ns, "vkttest0"); err != nil {
		t.Fatalf("tap gone after Create returned: %v", err)
	}
	if _, err := interfaceIn(t, netns.Self, "vkttest0"); err == nil {
		t.Error("tap created in this process's namespace instead of the given one")
	}
	if err := Create(ns, "vkttest0", os.Geteuid()); !errors.Is(err, os.ErrExist) {
		t.Errorf("second Create = %v, want ErrExist", err)
	}
	f, err := Open(ns, "vkttest0")
	if err != nil {
		t.Fatal(err)
	}
	// One attachment at a time, as with a VM holding it.
	if _, err := Open(ns, "vkttest0"); err == nil {
		t.Error("second Open of an attached tap succeeded")
	}
	f.Close()
	g, err := Open(ns, "vkttest0")
	if err != nil {
		t.Fatalf("Open after the first holder closed: %v", err)
	}
	g.Close()
}

func TestOpenMissingDoesNotCreate(t *testing.T) {
	ns := testNamespace(t)
	if _, err := Open(ns, "vktnothere"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(missing) = %v, want ErrNotFound", err)
	}
	if _, err := interfaceIn(t, ns, "vktnothere"); err == nil {
		t.Error("Open of a missing tap created one")
	}
}
