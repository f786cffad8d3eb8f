package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	"k8s.io/klog/v2"
)

// useLogger sends virtual-kubelet's and klog's (client-go's) logs to
// logger, so the node has one log. virtual-kubelet's own slog adapter is
// not used: it asserts its first argument is a string and panics on
// log.G(ctx).Error(err), which virtual-kubelet's pod controller calls.
func useLogger(logger *slog.Logger) {
	vklog.L = slogLogger{l: logger}
	klog.SetSlogLogger(logger)
}

// slogLogger is virtual-kubelet's Logger over slog.
type slogLogger struct{ l *slog.Logger }

var _ vklog.Logger = slogLogger{}

func (s slogLogger) Debug(args ...any)                 { s.l.Debug(fmt.Sprint(args...)) }
func (s slogLogger) Debugf(format string, args ...any) { s.l.Debug(fmt.Sprintf(format, args...)) }
func (s slogLogger) Info(args ...any)                  { s.l.Info(fmt.Sprint(args...)) }
func (s slogLogger) Infof(format string, args ...any)  { s.l.Info(fmt.Sprintf(format, args...)) }
func (s slogLogger) Warn(args ...any)                  { s.l.Warn(fmt.Sprint(args...)) }
func (s slogLogger) Warnf(format string, args ...any)  { s.l.Warn(fmt.Sprintf(format, args...)) }
func (s slogLogger) Error(args ...any)                 { s.l.Error(fmt.Sprint(args...)) }
func (s slogLogger) Errorf(format string, args ...any) { s.l.Error(fmt.Sprintf(format, args...)) }

// Fatal logs and exits, as the interface promises.
func (s slogLogger) Fatal(args ...any) {
	s.l.Error(fmt.Sprint(args...))
	os.Exit(1)
}

func (s slogLogger) Fatalf(format string, args ...any) { s.Fatal(fmt.Sprintf(format, args...)) }

func (s slogLogger) WithField(key string, val any) vklog.Logger {
	return slogLogger{l: s.l.With(key, val)}
}

func (s slogLogger) WithFields(f vklog.Fields) vklog.Logger {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys) // stable attribute order
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, k, f[k])
	}
	return slogLogger{l: s.l.With(args...)}
}

func (s slogLogger) WithError(err error) vklog.Logger { return slogLogger{l: s.l.With("err", err)} }

// loggerContext puts logger into ctx for virtual-kubelet's log.G.
func loggerContext(ctx context.Context, logger *slog.Logger) context.Context {
	return vklog.WithLogger(ctx, slogLogger{l: logger})
}
