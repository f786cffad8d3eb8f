// Package transport carries the agent API over one byte stream, the
// "vkav.agent" virtio console port: yamux multiplexes the port and every
// yamux stream is one gRPC connection.
//
// Every session starts with a handshake (hello.go): the guest speaks first,
// the host discards whatever came before the guest's hello and acks it, and
// the guest discards whatever came before the ack; only then does yamux
// start. So neither end depends on what the hypervisor does with bytes
// written before the other end was open, and a guest that connects again
// gets a fresh session on both ends.
//
// Guest side (linux): WaitForPort finds the port by name and Listen turns
// it into a net.Listener that survives the host disconnecting, resetting
// and reconnecting. Host side (any OS): Serve runs over the host end of the
// port (vm.Machine.Port) and Host.Open yields one stream per gRPC
// connection, on whichever session is current. Both ends share YamuxConfig.
package transport

import (
	"errors"
	"log/slog"
	"time"

	"github.com/hashicorp/yamux"
)

// Names of the console ports, as the host names them (they equal
// vm.AgentPort and vm.LogPort; the guest side does not import vm).
const (
	AgentPortName = "vkav.agent"
	LogPortName   = "vkav.log"
)

const (
	// maxStreamWindow is yamux's per-stream receive window. The default
	// (256 KiB) caps one stream at a window per round trip; 1 MiB keeps log
	// and exec streams moving on a console port whose round trip goes
	// through the hypervisor. Memory is only used when a reader falls behind.
	maxStreamWindow = 1 << 20
	// writeTimeout is yamux's "safety valve" for a write that makes no
	// progress. A paused VM (or a stopped node debugger) must not tear the
	// session down, so it is set far beyond any pause we expect; callers bound
	// their own waits with contexts.
	writeTimeout = 24 * time.Hour
	// acceptBacklog bounds streams waiting for Accept (yamux default 256).
	acceptBacklog = 64
)

// YamuxConfig is the session configuration both ends use. Keepalive is off:
// a ping that goes unanswered while the VM is paused would close the
// session, and the host learns that a VM died from its hypervisor instead.
func YamuxConfig(log *slog.Logger) *yamux.Config {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &yamux.Config{
		AcceptBacklog:          acceptBacklog,
		EnableKeepAlive:        false,
		KeepAliveInterval:      time.Hour, // unused with keepalive off, but must be positive
		ConnectionWriteTimeout: writeTimeout,
		MaxStreamWindowSize:    maxStreamWindow,
		// Zero: an unacknowledged stream open must not close the whole
		// session while the guest is paused.
		StreamOpenTimeout:  0,
		StreamCloseTimeout: 5 * time.Minute,
		Logger:             slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// ErrSessionClosed is returned by Host.Open once the port has closed.
var ErrSessionClosed = errors.New("agent transport session closed")
