package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// qmpMessage is any message QEMU's monitor sends (docs/interop/qmp-spec).
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
	Data  struct {
		Reason string `json:"reason"`
	} `json:"data"`
}

// qmpClient is one QMP session: commands run one at a time; events go to
// onEvent from the reader goroutine.
type qmpClient struct {
	conn    net.Conn
	mu      sync.Mutex // one command in flight
	replies chan qmpMessage
	closed  chan struct{}
	onEvent func(qmpMessage)
}

// newQMPClient reads the greeting, enters command mode and starts reading.
func newQMPClient(ctx context.Context, conn net.Conn, onEvent func(qmpMessage)) (*qmpClient, error) {
	q := &qmpClient{conn: conn, replies: make(chan qmpMessage, 1), closed: make(chan struct{}), onEvent: onEvent}
	r := bufio.NewReader(conn)
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	var greeting qmpMessage
	line, err := r.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &greeting)
	}
	if err != nil || greeting.QMP == nil {
		return nil, fmt.Errorf("read QMP greeting: %v (%q)", err, line)
	}
	if _, err := conn.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n")); err != nil {
		return nil, fmt.Errorf("negotiate QMP capabilities: %w", err)
	}
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("negotiate QMP capabilities: %w", err)
		}
		var m qmpMessage
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("negotiate QMP capabilities: %w (%q)", err, line)
		}
		if m.Error != nil {
			return nil, fmt.Errorf("negotiate QMP capabilities: %s", m.Error.Desc)
		}
		if m.Return != nil {
			break
		}
	}
	conn.SetDeadline(noDeadline)
	go q.read(r)
	return q, nil
}

func (q *qmpClient) read(r *bufio.Reader) {
	defer close(q.closed)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var m qmpMessage
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		switch {
		case m.Event != "":
			if q.onEvent != nil {
				q.onEvent(m)
			}
		case m.Return != nil || m.Error != nil:
			select {
			case q.replies <- m:
			default: // a reply nobody waits for (its caller gave up)
			}
		}
	}
}

var errQMPClosed = errors.New("QMP connection closed")

// execute runs one command without arguments and waits for its reply.
func (q *qmpClient) execute(ctx context.Context, command string) error {
	_, err := q.call(ctx, command, nil, -1)
	return err
}

// call runs one command with arguments (nil: none) and returns its
// reply's "return" value. A file descriptor fd >= 0 goes along with the
// command (SCM_RIGHTS), as getfd wants it.
func (q *qmpClient) call(ctx context.Context, command string, args any, fd int) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	// Drop a stale reply of an earlier command that timed out.
	select {
	case <-q.replies:
	default:
	}
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	msg, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	msg = append(msg, '\n')
	if fd >= 0 {
		uc, ok := q.conn.(*net.UnixConn)
		if !ok {
			return nil, fmt.Errorf("qmp %s: passing a descriptor needs a unix socket", command)
		}
		_, _, err = uc.WriteMsgUnix(msg, unix.UnixRights(fd), nil)
	} else {
		_, err = q.conn.Write(msg)
	}
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case m := <-q.replies:
		if m.Error != nil {
			return nil, fmt.Errorf("qmp %s: %s: %s", command, m.Error.Class, m.Error.Desc)
		}
		return m.Return, nil
	case <-q.closed:
		return nil, fmt.Errorf("qmp %s: %w", command, errQMPClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

func (q *qmpClient) Close() error { return q.conn.Close() }

var noDeadline time.Time
