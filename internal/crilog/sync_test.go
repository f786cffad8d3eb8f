package crilog

import (
	"github.com/vk-applevm/vk-applevm/internal/syncbuf"
)

// syncBuffer is safe for a writer and a poller.
type syncBuffer = syncbuf.Buffer
