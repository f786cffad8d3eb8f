package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/internal/syncbuf"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	"k8s.io/klog/v2"
)

// syncBuffer is safe for a writer and a poller.
type syncBuffer = syncbuf.Buffer

func TestOneLoggerForVirtualKubeletAndKlog(t *testing.T) {
	prev := vklog.L
	defer func() { vklog.L = prev; klog.ClearLogger() }()
	var buf syncBuffer
	useLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))

	// virtual-kubelet's pod controller logs errors as values; its own
	// slog adapter panics on that.
	vklog.G(context.Background()).Error(errors.New("boom"))
	vklog.G(context.Background()).WithFields(vklog.Fields{"pod": "ns/web", "b": 1}).WithError(errors.New("why")).Warnf("sync %d", 3)
	vklog.G(context.Background()).Debug()
	klog.InfoS("from client-go", "key", "value")
	klog.Flush()

	out := buf.String()
	for _, want := range []string{`level=ERROR msg=boom`, `level=WARN msg="sync 3" b=1 pod=ns/web err=why`, `msg="from client-go" key=value`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
