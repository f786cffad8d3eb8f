package agent

import (
	"strings"
	"testing"
)

// Lines as a Linux 6.1 guest prints them (x86_64).
const procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0 100 0 0 10 0
   2: 0200D50A:0050 0300D50A:B1A2 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0 100 0 0 10 0
   3: 0200D50A:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1004 1 0 100 0 0 10 0
`

const procTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0 100 0 0 10 0
   1: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:2329 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0 100 0 0 10 0
   3: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2004 1 0 100 0 0 10 0
`

const procUDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3001 2 0 0
  101: 0300D50A:B1A3 0100D50A:0035 01 00000000:00000000 00:00000000 00000000     0        0 3002 2 0 0
  102: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3003 2 0 0
`

func TestParseProcNetFindsServers(t *testing.T) {
	var all []listenPort
	for _, c := range []struct {
		text, proto string
		v6          bool
	}{{procTCP, "TCP", false}, {procTCP6, "TCP", true}, {procUDP, "UDP", false}} {
		got, err := parseProcNet(strings.NewReader(c.text), c.proto, c.v6)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
	}
	all = sortPorts(all)
	// 80 on all addresses (v4 and v6: one), 5000 on the pod address, 8081
	// on v6 any; UDP 5353. Not: loopback-only 8080, 9000, 9001, UDP 53,
	// the established connection, the connected UDP client.
	want := []listenPort{{"TCP", 80}, {"TCP", 5000}, {"TCP", 8081}, {"UDP", 5353}}
	if len(all) != len(want) {
		t.Fatalf("got %v, want %v", all, want)
	}
	for i := range want {
		if all[i] != want[i] {
			t.Fatalf("got %v, want %v", all, want)
		}
	}
	if portsVersion(all) == portsVersion(all[:3]) || portsVersion(all) != portsVersion(append([]listenPort(nil), all...)) {
		t.Error("versions must differ exactly when the sets do")
	}
}
