// A runtime of the family written for this project's grader self-test: docker's shape
// (`run IMAGE CMD [ARG...]`, the image at /fs/<image>/rootfs) on a cgroup v2 host, limiting
// only the number of processes (pids.max = 10). The child joins the cgroup itself, sets up its
// namespaces' view (hostname, private mounts, chroot, /proc) and becomes the command with exec,
// so no Go thread of the runtime counts against the limit once the command runs.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

const group = "/sys/fs/cgroup/pidsonly"

func main() {
	switch {
	case len(os.Args) >= 4 && os.Args[1] == "run":
		os.Exit(parent(os.Args[2], os.Args[3:]))
	case len(os.Args) >= 4 && os.Args[1] == "__child":
		child(os.Args[2], os.Args[3:])
	default:
		fmt.Fprintln(os.Stderr, "usage: devoxx-docker run IMAGE CMD [ARG...]")
		os.Exit(2)
	}
}

func parent(image string, command []string) int {
	if err := os.MkdirAll(group, 0755); err != nil {
		return fail("cgroup", err)
	}
	defer os.Remove(group)
	if err := os.WriteFile(filepath.Join(group, "pids.max"), []byte("10"), 0644); err != nil {
		return fail("pids.max", err)
	}
	cmd := exec.Command("/proc/self/exe", append([]string{"__child", image}, command...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
	}
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode()
	}
	if err != nil {
		return fail("run", err)
	}
	return 0
}

func child(image string, command []string) {
	pid := []byte(strconv.Itoa(os.Getpid()))
	steps := []struct {
		what string
		do   func() error
	}{
		{"join the cgroup", func() error { return os.WriteFile(filepath.Join(group, "cgroup.procs"), pid, 0644) }},
		{"hostname", func() error { return syscall.Sethostname([]byte("container")) }},
		{"private mounts", func() error { return syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, "") }},
		{"chroot", func() error { return syscall.Chroot(filepath.Join("/fs", image, "rootfs")) }},
		{"chdir", func() error { return os.Chdir("/") }},
		{"mount /proc", func() error { return syscall.Mount("proc", "/proc", "proc", 0, "") }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			os.Exit(fail(s.what, err))
		}
	}
	path, err := exec.LookPath(command[0])
	if err != nil {
		os.Exit(fail("look up the command", err))
	}
	os.Exit(fail("exec", syscall.Exec(path, command, os.Environ())))
}

func fail(what string, err error) int {
	fmt.Fprintf(os.Stderr, "devoxx-docker: %s: %v\n", what, err)
	return 1
}
