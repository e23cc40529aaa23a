// A runtime of the "containers from scratch" family, written for this project's grader
// self-test: no subcommand at all (`devoxx-docker CMD [ARG...]`), an image store of its own
// (/var/lib/tinybox/images/alpine/rootfs), and the devoxx workshop's cgroup v2 limits (100 MiB,
// half a CPU). The parent starts itself again in new UTS, PID and mount namespaces, places the
// child in the cgroup while the child waits on a pipe, then lets it go on: the child makes its
// mounts private, chroots, mounts /proc and runs the command.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

const (
	store = "/var/lib/tinybox/images"
	image = "alpine"
	group = "/sys/fs/cgroup/tinybox"
	// The child finds itself started again by this variable, not by an argument.
	childVar = "TINYBOX_CHILD"
)

func main() {
	if os.Getenv(childVar) == "1" {
		os.Exit(child(os.Args[1:]))
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: devoxx-docker CMD [ARG...]")
		os.Exit(2)
	}
	os.Exit(parent(os.Args[1:]))
}

func parent(command []string) int {
	if err := os.MkdirAll(group, 0755); err != nil {
		return fail(err)
	}
	defer os.Remove(group)
	for file, value := range map[string]string{"memory.max": "104857600", "cpu.max": "50000 100000"} {
		if err := os.WriteFile(filepath.Join(group, file), []byte(value), 0644); err != nil {
			return fail(err)
		}
	}
	gate, release, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	cmd := exec.Command("/proc/self/exe", command...)
	cmd.Env = append(os.Environ(), childVar+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{gate} // fd 3 in the child
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
	}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	gate.Close()
	pid := strconv.Itoa(cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(group, "cgroup.procs"), []byte(pid), 0644); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fail(err)
	}
	release.Close() // placed: the child may go on
	err = cmd.Wait()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode()
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

func child(command []string) int {
	gate := os.NewFile(3, "gate")
	gate.Read(make([]byte, 1)) // returns at EOF, once the parent has placed us
	gate.Close()
	steps := []func() error{
		func() error { return syscall.Sethostname([]byte("tinybox")) },
		func() error { return syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, "") },
		func() error { return syscall.Chroot(filepath.Join(store, image, "rootfs")) },
		func() error { return os.Chdir("/") },
		func() error { return syscall.Mount("proc", "/proc", "proc", 0, "") },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fail(err)
		}
	}
	defer syscall.Unmount("/proc", 0)
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode()
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "tinybox: %v\n", err)
	return 1
}
