// Command waitfor stands in for a third-party init-container image
// (registry.example.com/e2e-harness/waitfor): it waits until a URL answers
// 200, so the pod's main container starts only when its dependency serves.
//
//	waitfor URL [TIMEOUT]
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

func run(args []string, out io.Writer) int {
	if len(args) < 1 || len(args) > 2 {
		fmt.Fprintln(out, "usage: waitfor URL [TIMEOUT]")
		return 2
	}
	timeout := 60 * time.Second
	if len(args) == 2 {
		d, err := time.ParseDuration(args[1])
		if err != nil {
			fmt.Fprintln(out, "waitfor: bad TIMEOUT:", err)
			return 2
		}
		timeout = d
	}
	client := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	last := "nothing yet"
	for time.Now().Before(deadline) {
		seen := ""
		resp, err := client.Get(args[0])
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Fprintf(out, "waitfor: %s answered %s\n", args[0], resp.Status)
				return 0
			}
			seen = resp.Status
		} else {
			seen = err.Error()
		}
		if seen != last { // each new answer once: the log says why it still waits
			fmt.Fprintf(out, "waitfor: %s: %s\n", args[0], seen)
			last = seen
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(out, "waitfor: gave up after %s waiting for %s; last seen: %s\n", timeout, args[0], last)
	return 1
}
