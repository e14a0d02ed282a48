package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "exit" {
		fmt.Println("exiting with", os.Args[2])
		code, _ := strconv.Atoi(os.Args[2])
		os.Exit(code)
	}
	if len(os.Args) > 1 && os.Args[1] == "crash-later" { // a panic a while after start: restarted in place
		fmt.Println("instance started at", time.Now().Format(time.RFC3339Nano))
		time.Sleep(2 * time.Second)
		fmt.Println("crashing on purpose")
		os.Exit(1)
	}
	if len(os.Args) > 1 && os.Args[1] == "crash" {
		fmt.Println("crashing on purpose")
		os.Exit(1)
	}
	if len(os.Args) > 2 && os.Args[1] == "fetch-once" {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(os.Args[2])
		if err != nil {
			fmt.Println("fetch:", err)
			os.Exit(1)
		}
		fmt.Println("fetched: HTTP", resp.Status)
		os.Exit(0)
	}
	if len(os.Args) > 2 && os.Args[1] == "fetch" {
		deadline := time.Now().Add(60 * time.Second)
		for ; time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			resp, err := http.Get(os.Args[2])
			if err != nil {
				fmt.Println("fetch:", err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			fmt.Printf("fetched: %s\n", body)
			os.Exit(0)
		}
		os.Exit(1)
	}
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "pong from %s", host)
		})
		go http.ListenAndServe(":8080", nil)
	}
	fmt.Println("started")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	fmt.Println("stopped")
}
