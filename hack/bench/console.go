package main

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"time"
)

// initLine is the kernel's message as it hands over to /init
// (init/main.c, run_init_process), with its printk timestamp.
var initLine = regexp.MustCompile(`(?m)^\[\s*(\d+)\.(\d{6})\] Run /init as init process`)

// initStart is the guest uptime at which the kernel ran /init, from a
// console log; 0 when the log holds no such line (printk timestamps off,
// or the console was not written).
func initStart(consoleLog string) time.Duration {
	data, err := os.ReadFile(consoleLog)
	if err != nil {
		return 0
	}
	return parseInitStart(data)
}

func parseInitStart(console []byte) time.Duration {
	m := initLine.FindSubmatch(console)
	if m == nil {
		return 0
	}
	sec, err1 := strconv.ParseInt(string(m[1]), 10, 64)
	usec, err2 := strconv.ParseInt(string(m[2]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(sec)*time.Second + time.Duration(usec)*time.Microsecond
}

// consoleTail is the end of a console log for error messages.
func consoleTail(consoleLog string) string {
	data, err := os.ReadFile(consoleLog)
	if err != nil || len(data) == 0 {
		return ""
	}
	const keep = 2048
	if len(data) > keep {
		data = data[len(data)-keep:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return "\nguest console (last lines):\n" + string(data)
}
