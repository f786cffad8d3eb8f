package grpcserver

import (
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// What one connection may make the agent hold: received data its
// handlers have not read (connRecvBudget, through the connection window),
// messages being assembled (Options.MaxConnMessageBytes), header lists
// (maxHeaderListSize, enforced while decoding) and streams
// (maxConcurrentStreams).

// arrived takes n bytes of a DATA frame off the client's connection
// window.
func (c *conn) arrived(n int64) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if n > c.credit {
		return connError{errCodeFlowControl, "DATA beyond the connection window"}
	}
	c.credit -= n
	c.buffered += n
	return nil
}

// released gives n buffered bytes back and, when the budget has room for
// a quarter of it, the connection window with them.
func (c *conn) released(n int64) error {
	c.rmu.Lock()
	c.buffered -= n
	grant := connRecvBudget - c.buffered - c.credit
	if grant < connRecvBudget/4 {
		c.rmu.Unlock()
		return nil
	}
	c.credit += grant
	c.rmu.Unlock()
	return c.writeWindowUpdate(0, uint32(grant))
}

// reserveMessage counts a message of n bytes against the connection's
// bound before it is allocated.
func (c *conn) reserveMessage(n int64) error {
	max := c.srv.opts.MaxConnMessageBytes
	if c.msgBytes.Add(n) > max {
		c.msgBytes.Add(-n)
		return status.Errorf(codes.ResourceExhausted, "a %d-byte message would exceed the %d bytes this connection may hold for messages arriving", n, max)
	}
	return nil
}

// headerDecode decodes one header block fragment by fragment, keeping at
// most maxHeaderListSize of fields: the decoder's state must follow the
// whole block, but what a client sends beyond the list size it was told
// is not kept (an indexed field is one byte on the wire and up to the
// table size once decoded).
type headerDecode struct {
	c        *conn
	fields   []hpack.HeaderField
	size     int
	block    int
	tooLarge bool
}

func (c *conn) newHeaderDecode() *headerDecode {
	d := &headerDecode{c: c}
	c.hdec.SetEmitFunc(func(f hpack.HeaderField) {
		if d.tooLarge {
			return
		}
		if d.size += len(f.Name) + len(f.Value) + 32; d.size > maxHeaderListSize {
			d.tooLarge, d.fields = true, nil
			return
		}
		d.fields = append(d.fields, f)
	})
	return d
}

func (d *headerDecode) write(frag []byte) error {
	if d.block += len(frag); d.block > maxHeaderBlock {
		return connError{errCodeProtocol, "header block too large"}
	}
	if _, err := d.c.hdec.Write(frag); err != nil {
		return connError{errCodeCompression, "decode headers: " + err.Error()}
	}
	return nil
}

func (d *headerDecode) finish() ([]hpack.HeaderField, error) {
	if err := d.c.hdec.Close(); err != nil {
		return nil, connError{errCodeCompression, "decode headers: " + err.Error()}
	}
	if !d.tooLarge && d.size > d.c.largestHeaderList {
		d.c.largestHeaderList = d.size
	}
	return d.fields, nil
}
