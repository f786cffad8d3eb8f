package agent

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TemplateEnv is set (vkavtemplate=1 on the kernel command line, which
// the kernel passes to PID 1 as the environment) in a guest booted to be
// saved as a template that many machines of one shape resume from.
const TemplateEnv = "vkavtemplate"

// HeldForResume are the drivers a template guest loads only when Setup
// asks, in a machine resumed from it: their devices' host ends (disk
// images and sizes, NIC MACs) are that machine's own, and a driver reads
// them when it binds. Everything else, the entropy device included, loads
// before the save.
var HeldForResume = []string{"virtio_blk", "virtio_net"}

// HWRNGDevice is the hardware RNG (virtio-rng) the kernel exposes.
const HWRNGDevice = "/dev/hwrng"

// reseedBytes is how much fresh entropy a resumed guest takes from the
// host: 256 bits, the size of the CRNG's key.
const reseedBytes = 32

// ReseedRandom gives a resumed guest its own random numbers. Every machine
// resumed from one template starts with the template's CRNG state, so
// /dev/urandom, getrandom(2) and the kernel's own keys derived after the
// resume would repeat in all of them until the kernel's next scheduled
// reseed (a minute). It mixes bytes read from the device's hardware RNG
// (the new machine's own host backend) into the input pool, credited
// (RNDADDENTROPY), and makes the CRNG reseed from it now (RNDRESEEDCRNG);
// both need CAP_SYS_ADMIN, which PID 1 has.
func ReseedRandom(hwrng string) error {
	seed := make([]byte, reseedBytes)
	f, err := os.Open(hwrng)
	if err != nil {
		return fmt.Errorf("reseed the kernel's random numbers: %w", err)
	}
	_, err = io.ReadFull(f, seed)
	f.Close()
	if err != nil {
		return fmt.Errorf("reseed the kernel's random numbers: read %s: %w", hwrng, err)
	}
	r, err := os.Open("/dev/urandom")
	if err != nil {
		return fmt.Errorf("reseed the kernel's random numbers: %w", err)
	}
	defer r.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(seed))
	binary.NativeEndian.PutUint32(info[0:], uint32(8*len(seed)))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(seed)))
	copy(info[8:], seed)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, r.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); errno != 0 {
		return fmt.Errorf("reseed the kernel's random numbers: RNDADDENTROPY: %w", errno)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, r.Fd(), unix.RNDRESEEDCRNG, 0); errno != 0 {
		return fmt.Errorf("reseed the kernel's random numbers: RNDRESEEDCRNG: %w", errno)
	}
	return nil
}
