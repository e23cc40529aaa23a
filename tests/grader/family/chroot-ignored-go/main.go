// A runtime of the family written for this project's grader self-test, with a classic bug:
// it ignores the error of its root switch. `run CMD [ARG...]`; its root is hard-coded
// (/root/rootfs-x86_64) and its devoxx-grade.toml does not say so, so under the grader the
// chroot fails, nothing stops it, and the command runs on the host's root: the rootfs step must
// fail ("the command ran outside the image"), every other step must pass.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

const group = "/sys/fs/cgroup/mini"

func main() {
	if len(os.Args) < 3 {
		fmt.Println("usage: devoxx-docker run CMD [ARG...]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run(os.Args[2:]))
	case "child":
		os.Exit(child(os.Args[2:]))
	}
	os.Exit(2)
}

func run(command []string) int {
	os.MkdirAll(group, 0755)
	defer os.Remove(group)
	os.WriteFile(filepath.Join(group, "memory.max"), []byte("104857600"), 0644)
	os.WriteFile(filepath.Join(group, "cpu.max"), []byte("50000 100000"), 0644)
	cmd := exec.Command("/proc/self/exe", append([]string{"child"}, command...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:   syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		Unshareflags: syscall.CLONE_NEWNS,
	}
	return code(cmd.Run())
}

func child(command []string) int {
	os.WriteFile(filepath.Join(group, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0644)
	syscall.Sethostname([]byte("container"))
	syscall.Chroot("/root/rootfs-x86_64") // the bug: its error is never looked at
	os.Chdir("/")
	syscall.Mount("proc", "proc", "proc", 0, "")
	defer syscall.Unmount("proc", 0)
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return code(cmd.Run())
}

func code(err error) int {
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode()
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	return 0
}
