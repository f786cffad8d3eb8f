package hostinfo

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
)

// Route flags from <linux/route.h> and <linux/ipv6_route.h>.
const (
	rtfUp     = 0x0001
	rtfReject = 0x0200
)

// openNetFile opens a /proc/net file of the calling thread's network
// namespace. /proc/net follows the process's main thread, which differs
// from the caller after setns on a locked thread (tests do that).
func openNetFile(name string) (*os.File, error) {
	f, err := os.Open("/proc/thread-self/net/" + name)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.Open("/proc/net/" + name) // kernels before 3.17
	}
	return f, err
}

func defaultInterface() (string, error) {
	if name, err := defaultRoute4(); err != nil || name != "" {
		return name, err
	}
	if name, err := defaultRoute6(); err != nil || name != "" {
		return name, err
	}
	return "", errors.New("no default route: pass the node IP or interface explicitly")
}

// defaultRoute4 reads /proc/net/route: Iface Destination Gateway Flags
// RefCnt Use Metric Mask ..., addresses in hex.
func defaultRoute4() (string, error) {
	f, err := openNetFile("route")
	if err != nil {
		return "", fmt.Errorf("read IPv4 routes: %w", err)
	}
	defer f.Close()
	best, bestMetric := "", uint64(math.MaxUint64)
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 || fl[1] != "00000000" || fl[7] != "00000000" {
			continue
		}
		flags, err1 := strconv.ParseUint(fl[3], 16, 32)
		metric, err2 := strconv.ParseUint(fl[6], 10, 64)
		if err1 != nil || err2 != nil || flags&rtfUp == 0 {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = fl[0], metric
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read IPv4 routes: %w", err)
	}
	return best, nil
}

// defaultRoute6 reads /proc/net/ipv6_route: dest prefixlen src prefixlen
// nexthop metric refcnt use flags iface, numbers in hex.
func defaultRoute6() (string, error) {
	f, err := openNetFile("ipv6_route")
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil // IPv6 disabled
	}
	if err != nil {
		return "", fmt.Errorf("read IPv6 routes: %w", err)
	}
	defer f.Close()
	best, bestMetric := "", uint64(math.MaxUint64)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 || fl[0] != strings.Repeat("0", 32) || fl[1] != "00" || fl[9] == "lo" {
			continue
		}
		metric, err1 := strconv.ParseUint(fl[5], 16, 64)
		flags, err2 := strconv.ParseUint(fl[8], 16, 32)
		if err1 != nil || err2 != nil || flags&rtfUp == 0 || flags&rtfReject != 0 {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = fl[9], metric
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read IPv6 routes: %w", err)
	}
	return best, nil
}
