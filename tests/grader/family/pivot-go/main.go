// A runtime of the "containers from scratch" family, written for this project's grader
// self-test: `run CMD [ARG...]` with its root in `rootfs/` under the working directory, entered
// with pivot_root, and a cgroup v2 of its own limited to 50 MiB and a fifth of a CPU. The
// parent makes the cgroup and starts the child in new UTS, PID and mount namespaces; the child
// joins the cgroup itself before anything else, makes its mounts private, pivots into the root,
// mounts /proc, detaches the old root and becomes the command (exec: the command is PID 1).
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
	rootDir = "rootfs" // relative to the working directory
	group   = "/sys/fs/cgroup/pivot"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: devoxx-docker run CMD [ARG...]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(parent(os.Args[2:]))
	case "init":
		child(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func parent(command []string) int {
	root, err := filepath.Abs(rootDir)
	check(err)
	check(os.MkdirAll(group, 0755))
	defer os.Remove(group)
	check(os.WriteFile(filepath.Join(group, "memory.max"), []byte("52428800"), 0644))
	check(os.WriteFile(filepath.Join(group, "cpu.max"), []byte("20000 100000"), 0644))
	cmd := exec.Command("/proc/self/exe", append([]string{"init", root}, command...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
	}
	err = cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	check(err)
	return 0
}

func child(args []string) {
	root, command := args[0], args[1:]
	// Joined before anything runs: the command can never start outside the limits.
	check(os.WriteFile(filepath.Join(group, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0644))
	check(syscall.Sethostname([]byte("container")))
	check(syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""))
	// pivot_root needs the new root to be a mount point.
	check(syscall.Mount(root, root, "", syscall.MS_BIND|syscall.MS_REC, ""))
	old := filepath.Join(root, ".old-root")
	check(os.MkdirAll(old, 0700))
	check(syscall.PivotRoot(root, old))
	check(os.Chdir("/"))
	check(syscall.Mount("proc", "/proc", "proc", 0, ""))
	check(syscall.Unmount("/.old-root", syscall.MNT_DETACH))
	check(os.Remove("/.old-root"))
	path, err := exec.LookPath(command[0])
	check(err)
	check(syscall.Exec(path, command, os.Environ()))
}

func check(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "container: %v\n", err)
		os.Exit(1)
	}
}
