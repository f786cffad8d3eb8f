package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/vm/shim"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// VM is the VM of one container.
type VM struct {
	rt   *Runtime
	id   string
	dir  string
	rec  record
	shim *shim.Client

	mu    sync.Mutex
	agent *client.Client
	// streams are the attach, exec and forward calls in flight on agent;
	// Delete and Stop let them finish before they close it.
	streams streamSet
}

func (s *VM) ID() string                { return s.id }
func (s *VM) Name() string              { return s.rec.Config.Name }
func (s *VM) Labels() map[string]string { return s.rec.Config.Labels }
func (s *VM) Config() VMConfig          { return s.rec.Config }
func (s *VM) Created() time.Time        { return s.rec.Created }

// ImageRef is the repository@digest reference the VM runs.
func (s *VM) ImageRef() string { return s.rec.Image }

// ImageDigest is the platform manifest digest of the VM's image.
func (s *VM) ImageDigest() string { return s.rec.ImageDigest }

// Dir is the VM's state directory (console.log lives there).
func (s *VM) Dir() string { return s.dir }

// IP is the VM's address: its pod's.
func (s *VM) IP() string {
	if s.rec.Endpoint == nil || !s.rec.Endpoint.IP.IsValid() {
		return ""
	}
	return s.rec.Endpoint.IP.String()
}

// Addr is IP as a netip.Addr.
func (s *VM) Addr() netip.Addr {
	if s.rec.Endpoint == nil {
		return netip.Addr{}
	}
	return s.rec.Endpoint.IP
}

// State is the shim's view of the VM.
func (s *VM) State(ctx context.Context) (shim.State, error) {
	return s.shim.State(ctx)
}

// Running reports whether the VM is up.
func (s *VM) Running(ctx context.Context) bool {
	st, err := s.shim.State(ctx)
	return err == nil && st.Status == shim.StatusRunning
}

func (s *VM) agentClient() (*client.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent != nil {
		return s.agent, nil
	}
	ag, err := client.Dial(context.Background(), s.shim.DialAgent)
	if err != nil {
		return nil, err
	}
	s.agent = ag
	return ag, nil
}

func (s *VM) closeAgent() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent != nil {
		s.agent.Close()
		s.agent = nil
	}
}

// Close releases the VM's connections; the VM keeps running.
func (s *VM) Close() error {
	s.closeAgent()
	return s.shim.Close()
}

// agentErr turns an RPC failure into ErrStopped when the VM is gone, and
// maps NotFound to ErrNotFound.
func (s *VM) agentErr(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.NotFound:
			return fmt.Errorf("%s: %w: %s", what, ErrNotFound, st.Message())
		case codes.Unavailable:
			if !s.Running(context.WithoutCancel(ctx)) {
				return fmt.Errorf("%s: %w", what, ErrStopped)
			}
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Reset discards the container's writable layer and builds a fresh one for
// the next instance of the container (files volumes come back empty; the
// caller rewrites them). Leftover processes are killed first.
func (s *VM) Reset(ctx context.Context) error {
	ag, err := s.agentClient()
	if err != nil {
		return err
	}
	req, err := createContainerRequest(s.id, s.rec.Config)
	if err != nil {
		return err
	}
	_, _ = ag.Signal(ctx, &api.SignalRequest{ContainerId: s.id, Signal: int32(syscall.SIGKILL), All: true})
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = ag.CreateContainer(ctx, req)
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // processes still exiting
			continue
		}
		return s.agentErr(ctx, "reset writable layer", err)
	}
}

// userSpec is who a process runs as, for the agent to resolve in the
// container's /etc/passwd: explicit ids win over the User string; a uid
// without a gid takes the user's primary group, as containerd does.
func userSpec(p ProcessConfig) string {
	switch {
	case p.UID != nil && p.GID != nil:
		return fmt.Sprintf("%d:%d", *p.UID, *p.GID)
	case p.UID != nil:
		return fmt.Sprint(*p.UID)
	case p.GID != nil && p.User != "":
		u, _, _ := strings.Cut(p.User, ":")
		return fmt.Sprintf("%s:%d", u, *p.GID)
	case p.GID != nil:
		return fmt.Sprintf("0:%d", *p.GID)
	}
	return p.User
}

func (s *VM) createProcess(ctx context.Context, ag *client.Client, p ProcessConfig, stdin bool) error {
	if err := s.registerLog(ctx, p.LogName); err != nil {
		return err
	}
	_, err := ag.CreateProcess(ctx, &api.CreateProcessRequest{
		ContainerId: s.id, ProcessId: p.ID, Args: p.Args, Env: p.Env, Cwd: p.Cwd,
		User: userSpec(p), AdditionalGids: p.AdditionalGIDs, Terminal: p.TTY, Stdin: stdin,
		LogName: p.LogName, Rows: uint32(p.Rows), Cols: uint32(p.Cols),
	})
	return mapProcessErr(err)
}

// registerLog tells the shim that the guest may write the log called name:
// the shim writes no file for a name the host did not register.
func (s *VM) registerLog(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	return s.shim.RegisterLog(ctx, name)
}

// mapProcessErr maps the agent's command errors to ErrCommandNotFound and
// ErrCommandNotExecutable.
func mapProcessErr(err error) error {
	err = client.MapProcessError(err)
	switch {
	case errors.Is(err, client.ErrCommandNotFound):
		return fmt.Errorf("%w: %v", ErrCommandNotFound, err)
	case errors.Is(err, client.ErrCommandNotExecutable):
		return fmt.Errorf("%w: %v", ErrCommandNotExecutable, err)
	}
	return err
}

// Start runs a process without attaching to it (its output goes to the
// log when LogName is set) and returns when it has started.
func (s *VM) Start(ctx context.Context, p ProcessConfig) (time.Time, error) {
	ag, err := s.agentClient()
	if err != nil {
		return time.Time{}, err
	}
	if err := s.createProcess(ctx, ag, p, p.Stdin); err != nil {
		return time.Time{}, s.agentErr(ctx, "create process "+p.ID, err)
	}
	resp, err := ag.StartProcess(ctx, &api.StartProcessRequest{ContainerId: s.id, ProcessId: p.ID})
	if err != nil {
		return time.Time{}, s.agentErr(ctx, "start process "+p.ID, mapProcessErr(err))
	}
	return time.Unix(0, resp.GetStartedUnixNs()), nil
}

// Exec runs a process to completion with its streams attached. For a
// logged process it returns once the log is complete on disk, as Wait does.
func (s *VM) Exec(ctx context.Context, p ProcessConfig, stdio IO) (ExitStatus, error) {
	end, err := s.streams.begin("exec " + p.ID)
	if err != nil {
		return ExitStatus{}, err
	}
	defer end()
	ag, err := s.agentClient()
	if err != nil {
		return ExitStatus{}, err
	}
	if err := s.registerLog(ctx, p.LogName); err != nil {
		return ExitStatus{}, err
	}
	st, err := ag.Exec(ctx, client.ExecOptions{
		ContainerID: s.id, ProcessID: p.ID, Args: p.Args, Env: p.Env, Cwd: p.Cwd,
		User: userSpec(p), AdditionalGIDs: p.AdditionalGIDs, LogName: p.LogName,
		TTY: p.TTY, InitialSize: client.TermSize{Rows: uint32(p.Rows), Cols: uint32(p.Cols)}, Resize: termSizes(ctx, stdio.Resize),
		Stdin: stdio.Stdin, Stdout: stdio.Stdout, Stderr: stdio.Stderr, Keep: p.LogName != "",
	})
	if err != nil {
		return ExitStatus{}, s.agentErr(ctx, "exec "+p.ID, mapProcessErr(err))
	}
	if p.LogName != "" {
		s.waitLog(ctx, p.ID, p.LogName)
	}
	return exitStatus(st), nil
}

// termSizes converts terminal sizes for the agent client.
func termSizes(ctx context.Context, in <-chan TermSize) <-chan client.TermSize {
	if in == nil {
		return nil
	}
	out := make(chan client.TermSize)
	go func() {
		defer close(out)
		for sz := range in {
			select {
			case out <- client.TermSize{Rows: uint32(sz.Rows), Cols: uint32(sz.Cols)}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func exitStatus(st *api.ExitStatus) ExitStatus {
	return ExitStatus{
		Code: int(st.GetExitCode()), Signal: int(st.GetSignal()), OOMKilled: st.GetOomKilled(),
		StartedAt: time.Unix(0, st.GetStartedUnixNs()), FinishedAt: time.Unix(0, st.GetFinishedUnixNs()),
	}
}

// Wait blocks until the process exits and, when the process is logged,
// until its log is complete on disk (bounded by ctx only). The output
// travels on the log port and the exit on the agent API, so the exit can
// arrive first; whoever acts on it (the provider's status, and through it
// `kubectl logs -f` ending) must find every byte already written.
func (s *VM) Wait(ctx context.Context, processID string) (ExitStatus, error) {
	ag, err := s.agentClient()
	if err != nil {
		return ExitStatus{}, err
	}
	resp, err := ag.Wait(ctx, &api.WaitRequest{ContainerId: s.id, ProcessId: processID})
	if err != nil {
		if ctx.Err() != nil {
			return ExitStatus{}, ctx.Err()
		}
		return ExitStatus{}, s.agentErr(ctx, "wait for "+processID, err)
	}
	// The agent names the log only when it ends it with an end frame (an
	// older agent in a VM that outlived a node upgrade does not).
	if name := resp.GetLogName(); name != "" {
		s.waitLog(ctx, processID, name)
	}
	return exitStatus(resp.GetExit()), nil
}

// logSlowAfter is when a wait for a complete log is logged as slow.
const logSlowAfter = 5 * time.Second

// waitLog waits for the shim to have written the log called name up to
// the end frame the agent sends after the process's last output (or for
// the log port to have ended). The agent always sends it: once the
// output of a container's init has been read to its end (nothing of the
// container survives the init to hold its pipes), or, for another process,
// after its drain timeout for a surviving child's pipes. So the wait ends
// by itself and is bounded by ctx only (the pod's life, or a stop's grace
// period): a time bound would, on a loaded host where the guest or the log
// port lags, report the exit before the last lines are on disk, and
// `kubectl logs` of the finished container would lack them. Giving up only
// costs completeness, so that is logged, not returned.
func (s *VM) waitLog(ctx context.Context, processID, name string) {
	slow := time.AfterFunc(logSlowAfter, func() {
		s.rt.log.Warn("process exited; its log is not complete yet, still waiting", "vm", s.id, "process", processID, "log", name, "after", logSlowAfter)
	})
	defer slow.Stop()
	if _, err := s.shim.WaitLog(ctx, name); err != nil {
		s.rt.log.Warn("process exited, but its log may still lack its last output", "vm", s.id, "process", processID, "log", name, "err", err)
	}
}

// Signal sends sig to a process, or to every process of the container.
func (s *VM) Signal(ctx context.Context, processID string, sig syscall.Signal, all bool) error {
	ag, err := s.agentClient()
	if err != nil {
		return err
	}
	_, err = ag.Signal(ctx, &api.SignalRequest{ContainerId: s.id, ProcessId: processID, Signal: int32(sig), All: all})
	return s.agentErr(ctx, "signal "+processID, err)
}

// WriteFiles atomically replaces a files volume's content.
func (s *VM) WriteFiles(ctx context.Context, volume string, files []File) error {
	ag, err := s.agentClient()
	if err != nil {
		return err
	}
	req := &api.WriteFilesRequest{ContainerId: s.id, Volume: volume}
	for _, f := range files {
		req.Files = append(req.Files, &api.File{Path: f.Path, Content: f.Content, Mode: f.Mode})
	}
	_, err = ag.WriteFiles(ctx, req)
	return s.agentErr(ctx, "write volume "+volume, err)
}

// Stats samples the container's and the VM's resource use.
func (s *VM) Stats(ctx context.Context) (Stats, error) {
	ag, err := s.agentClient()
	if err != nil {
		return Stats{}, err
	}
	r, err := ag.Stats(ctx, &api.StatsRequest{ContainerId: s.id})
	if err != nil {
		return Stats{}, s.agentErr(ctx, "stats", err)
	}
	st := Stats{
		Time:               time.Unix(0, r.GetTimestampUnixNs()),
		CPUUsageNanos:      r.GetCpuUsageNs(),
		MemoryUsageBytes:   r.GetMemoryUsageBytes(),
		MemoryWorkingSet:   r.GetMemoryWorkingSetBytes(),
		MemoryRSSBytes:     r.GetMemoryRssBytes(),
		OOMKills:           r.GetOomKills(),
		Processes:          r.GetPids(),
		ScratchUsedBytes:   r.GetScratchUsedBytes(),
		ScratchTotalBytes:  r.GetScratchTotalBytes(),
		GuestMemoryBytes:   r.GetGuestMemoryTotalBytes(),
		GuestMemoryFree:    r.GetGuestMemoryAvailableBytes(),
		GuestCPUUsageNanos: r.GetGuestCpuUsageNs(),
	}
	if shimSt, err := s.shim.State(ctx); err == nil {
		st.HostMemoryBytes, _ = hostMemory(shimSt.Driver, shimSt.HypervisorPid)
	}
	return st, nil
}

// Forward connects conn to a TCP port on the VM's loopback through the
// agent, copying both ways until both sides are done.
func (s *VM) Forward(ctx context.Context, port uint16, conn io.ReadWriteCloser) error {
	end, err := s.streams.begin(fmt.Sprintf("forward to port %d", port))
	if err != nil {
		conn.Close()
		return err
	}
	defer end()
	ag, err := s.agentClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ag.Forward(ctx)
	if err != nil {
		return s.agentErr(ctx, "forward", err)
	}
	if err := stream.Send(&api.ForwardRequest{Port: uint32(port)}); err != nil {
		return s.agentErr(ctx, "forward", err)
	}
	clientDone, guestDone := make(chan error, 1), make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				if serr := stream.Send(&api.ForwardRequest{Data: append([]byte(nil), buf[:n]...)}); serr != nil {
					clientDone <- serr
					return
				}
			}
			if err != nil {
				// The client is done sending: half-close toward the guest.
				clientDone <- stream.Send(&api.ForwardRequest{CloseWrite: true})
				return
			}
		}
	}()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				guestDone <- err
				return
			}
			if _, err := conn.Write(m.GetData()); err != nil {
				guestDone <- err
				return
			}
		}
	}()
	// The guest closing its side ends the forward; the client closing its
	// side only half-closes, and the guest's answer still flows back.
	var err2 error
	select {
	case err2 = <-guestDone:
	case err2 = <-clientDone:
		if err2 == nil {
			err2 = <-guestDone
		}
	}
	conn.Close()
	if err2 != nil {
		return s.agentErr(ctx, fmt.Sprintf("forward to port %d", port), err2)
	}
	return nil
}

// Stop shuts the VM down: the agent stops the processes (SIGTERM, SIGKILL
// after grace), delivers what they wrote — attach and exec streams get
// their last output and exit status, logs their end — and only then powers
// off; the shim hands the streams what it received before it closes them,
// and kills the VM if the guest does not stop in time. The agent connection
// closes last, after the streams in flight here have finished (bounded by
// streamDrainTimeout): an attach or exec still reading the last output and
// exit status of a process that just ended (a pod that completes right as
// `kubectl attach` gets its answer) gets them.
func (s *VM) Stop(ctx context.Context, grace time.Duration) error {
	err := s.shim.Stop(ctx, grace)
	s.drainStreams(ctx)
	s.closeAgent()
	if err != nil && !errors.Is(err, shim.ErrShimDead) {
		return fmt.Errorf("stop VM %s: %w", s.id, err)
	}
	return nil
}

// Delete stops the VM if needed and frees its disk, address and directory;
// logs in LogDir stay.
//
// Order matters for streams still in flight (`kubectl attach` to a pod
// that ended a moment ago, an exec into a pod being deleted): no new
// stream starts; the container's processes are killed through the agent,
// so every stream ends with its process's last output and exit status; the
// streams get up to streamDrainTimeout to receive them; and only then is
// the agent connection closed and the VM killed. A stream that ignores all
// this (a client that stopped reading) holds the deletion no longer than
// the bound.
func (s *VM) Delete(ctx context.Context) error {
	if s.streams.close() > 0 {
		s.killAll(ctx)
		s.drainStreams(ctx)
	}
	s.closeAgent()
	began := time.Now()
	if err := s.shim.Delete(ctx); err != nil {
		return fmt.Errorf("delete VM %s: %w", s.id, err)
	}
	stopped := time.Now()
	if pub, ok := s.rt.cfg.Network.(network.Publisher); ok && len(s.rec.Config.Publish) > 0 {
		if err := pub.Publish(ctx, s.id, netip.Addr{}, nil); err != nil {
			return fmt.Errorf("withdraw the published ports of VM %s: %w", s.id, err)
		}
	}
	if err := s.rt.cfg.Network.Detach(ctx, s.id); err != nil {
		return fmt.Errorf("unplug VM %s: %w", s.id, err)
	}
	// A VM that is a pod of its own (a CLI container) frees the pod's
	// address; pods of several VMs are released by their owner.
	if s.rec.Config.Network.Pod == "" {
		if err := s.rt.cfg.Network.ReleasePod(ctx, s.id); err != nil {
			return fmt.Errorf("release the address of VM %s: %w", s.id, err)
		}
	}
	unplugged := time.Now()
	if err := os.RemoveAll(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", s.dir, err)
	}
	s.rt.log.Debug("VM deleted", "id", s.id, "shim", stopped.Sub(began), "network", unplugged.Sub(stopped), "files", time.Since(unplugged))
	return nil
}

// killAll sends SIGKILL to every process of the container, so the streams
// attached to them end. Errors are only logged: the VM may be gone, and
// Delete goes on regardless.
func (s *VM) killAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, streamDrainTimeout)
	defer cancel()
	ag, err := s.agentClient()
	if err == nil {
		_, err = ag.Signal(ctx, &api.SignalRequest{ContainerId: s.id, Signal: int32(syscall.SIGKILL), All: true})
	}
	if err != nil {
		s.rt.log.Debug("kill the container's processes before deleting its VM", "vm", s.id, "err", err)
	}
}

// drainStreams waits, bounded by streamDrainTimeout, for the streams in
// flight to finish.
func (s *VM) drainStreams(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, streamDrainTimeout)
	defer cancel()
	if err := s.streams.wait(ctx); err != nil {
		s.rt.log.Warn("cutting streams still in flight", "vm", s.id, "streams", s.streams.inFlight(), "err", err)
	}
}

// ConsoleLog is the path of the guest's console output.
func (s *VM) ConsoleLog() string { return filepath.Join(s.dir, "console.log") }

// Listeners waits up to wait for the ports the guest listens on to differ
// from version known ("" answers at once) and returns them with their
// version.
func (s *VM) Listeners(ctx context.Context, known string, wait time.Duration) ([]network.Port, string, error) {
	ag, err := s.agentClient()
	if err != nil {
		return nil, "", err
	}
	resp, err := ag.Listeners(ctx, &api.ListenersRequest{KnownVersion: known, WaitNs: int64(wait)})
	if err != nil {
		return nil, "", s.agentErr(ctx, "listening ports", err)
	}
	out := make([]network.Port, 0, len(resp.GetPorts()))
	for _, p := range resp.GetPorts() {
		out = append(out, network.Port{Protocol: p.GetProtocol(), Port: uint16(p.GetPort())})
	}
	return out, resp.GetVersion(), nil
}

// SetRelays makes localhost:port inside the VM reach the sibling container
// of the pod that serves port, through the gateway's relay at via. It
// returns the ports this VM's own processes already hold.
func (s *VM) SetRelays(ctx context.Context, via netip.AddrPort, tcpPorts []uint16) ([]uint16, error) {
	ag, err := s.agentClient()
	if err != nil {
		return nil, err
	}
	req := &api.SetRelaysRequest{Gateway: via.Addr().String(), RelayPort: uint32(via.Port())}
	for _, p := range tcpPorts {
		req.TcpPorts = append(req.TcpPorts, uint32(p))
	}
	resp, err := ag.SetRelays(ctx, req)
	if err != nil {
		return nil, s.agentErr(ctx, "relays to sibling containers", err)
	}
	var taken []uint16
	for _, p := range resp.GetTaken() {
		taken = append(taken, uint16(p))
	}
	return taken, nil
}
