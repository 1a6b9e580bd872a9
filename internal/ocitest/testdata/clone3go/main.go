// Command clone3go starts threads and a child process, for
// TestClone3Refused: built with CGO_ENABLED=0 the runtime makes its threads
// with clone; with cgo (cgo.go), through the C library's pthread_create,
// which tries clone3 first. Prints "ok" when all worked.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		return
	}
	// Goroutines locked to their threads while they wait: the runtime must
	// start a new OS thread for each.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			<-release
		}()
	}
	close(release)
	wg.Wait()
	if out, err := exec.Command(os.Args[0], "child").CombinedOutput(); err != nil {
		fmt.Printf("child: %v %s\n", err, out)
		os.Exit(1)
	}
	fmt.Println("ok")
}
