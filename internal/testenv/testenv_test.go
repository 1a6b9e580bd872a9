package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"testing"
)

// TestOnFreePorts: a start that reports ErrPortInUse is tried again on
// other ports, up to the attempts given; any other outcome ends it.
func TestOnFreePorts(t *testing.T) {
	var seen [][]int
	taken := errors.New("bind: address already in use")
	err := OnFreePorts(t, 2, 3, func(ports []int) error {
		seen = append(seen, ports)
		if len(ports) != 2 || ports[0] == ports[1] {
			t.Errorf("ports %v: want two distinct", ports)
		}
		if len(seen) < 3 {
			return fmt.Errorf("%w: %w", ErrPortInUse, taken)
		}
		return nil
	})
	if err != nil || len(seen) != 3 {
		t.Errorf("after two starts on taken ports: %v, %d starts; want nil after 3", err, len(seen))
	}
	calls := 0
	err = OnFreePorts(t, 1, 3, func([]int) error { calls++; return fmt.Errorf("%w: %w", ErrPortInUse, taken) })
	if !errors.Is(err, ErrPortInUse) || calls != 3 {
		t.Errorf("ports always taken: %v after %d starts; want ErrPortInUse after 3", err, calls)
	}
	other := errors.New("no such file")
	calls = 0
	if err := OnFreePorts(t, 1, 3, func([]int) error { calls++; return other }); err != other || calls != 1 {
		t.Errorf("another failure: %v after %d starts; want it after 1", err, calls)
	}
	if !AddrInUse("nginx: [emerg] bind() to 127.0.0.1:8080 failed (98: Address already in use)") || AddrInUse("bind: permission denied") {
		t.Error("AddrInUse")
	}
}

// TestPortOwners finds this process as the owner of a port it listens on,
// and no owner once it closed it.
func TestPortOwners(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	owners, err := PortOwners(port)
	if err != nil || !slices.Contains(owners, os.Getpid()) {
		t.Errorf("PortOwners(%d) = %v, %v; want this process (%d)", port, owners, err, os.Getpid())
	}
	l.Close()
	if owners, err := PortOwners(port); err != nil || len(owners) != 0 {
		t.Errorf("PortOwners(%d) after close = %v, %v; want none", port, owners, err)
	}
}
