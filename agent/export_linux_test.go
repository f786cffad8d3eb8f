package agent

// LimitDevices is limitDevices for the external tests, which have the
// test cgroup2 root.
var LimitDevices = limitDevices
