package agent

// LimitDevices is limitDevices for the external tests, which have the
// test cgroup2 root.
var LimitDevices = limitDevices

// SetBPFLoadAttempts sets how often an interrupted load is retried and
// returns a function that restores it.
func SetBPFLoadAttempts(n int) (restore func()) {
	old := bpfLoadAttempts
	bpfLoadAttempts = n
	return func() { bpfLoadAttempts = old }
}
