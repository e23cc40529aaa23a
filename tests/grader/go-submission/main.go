// A devoxx-docker workshop solution, as attendees write it: `run [-v SRC:DST]... IMAGE CMD...`.
// The parent sets up the cgroup and re-executes itself as "child" in new UTS, PID and mount
// namespaces; the child sets the hostname, mounts the volumes, switches root and runs the
// command as its own child.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: devoxx-docker run [-v SRC:DST]... IMAGE CMD [ARG...]")
		os.Exit(125)
	}
	switch os.Args[1] {
	case "run":
		run(os.Args[2:])
	case "child":
		child(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(125)
	}
}

// parse splits `-v SRC:DST ... IMAGE CMD...` into volumes, image and command.
func parse(args []string) (volumes []string, image string, command []string) {
	for len(args) >= 2 && args[0] == "-v" {
		volumes = append(volumes, args[1])
		args = args[2:]
	}
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: devoxx-docker run [-v SRC:DST]... IMAGE CMD [ARG...]")
		os.Exit(125)
	}
	return volumes, args[0], args[1:]
}

func run(args []string) {
	fmt.Printf("Running %v\n", args)
	cgroup := fmt.Sprintf("/sys/fs/cgroup/devoxx-docker-%d", os.Getpid())
	must(os.MkdirAll(cgroup, 0755))
	defer os.Remove(cgroup)
	must(os.WriteFile(filepath.Join(cgroup, "memory.max"), []byte("104857600"), 0644))
	must(os.WriteFile(filepath.Join(cgroup, "cpu.max"), []byte("50000 100000"), 0644))

	// The child waits on this pipe until it is in the cgroup: writing its pid after Start
	// races with a child that runs the command at once (the command would escape the limits).
	ready, release, err := os.Pipe()
	must(err)
	cmd := exec.Command("/proc/self/exe", append([]string{"child"}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{ready} // fd 3 in the child
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:   syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		Unshareflags: syscall.CLONE_NEWNS,
	}
	must(cmd.Start())
	ready.Close()
	must(os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0644))
	release.Close() // the child may go on
	err = cmd.Wait()
	os.Remove(cgroup)
	if exit, ok := err.(*exec.ExitError); ok {
		os.Exit(exit.ExitCode())
	}
	must(err)
}

func child(args []string) {
	// Wait until the parent has put us in the cgroup (it closes the pipe's write end).
	ready := os.NewFile(3, "ready")
	ready.Read(make([]byte, 1))
	ready.Close()
	volumes, image, command := parse(args)
	rootfs := filepath.Join("/fs", image, "rootfs")
	must(syscall.Sethostname([]byte("container")))
	// Nothing we mount may propagate back to the host.
	must(syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""))
	for _, v := range volumes {
		parts := strings.SplitN(v, ":", 2)
		if len(parts) != 2 {
			fmt.Fprintln(os.Stderr, "bad volume", v)
			os.Exit(125)
		}
		target := filepath.Join(rootfs, parts[1])
		must(os.MkdirAll(target, 0755))
		must(syscall.Mount(parts[0], target, "", syscall.MS_BIND|syscall.MS_REC, ""))
	}
	must(syscall.Chroot(rootfs))
	must(os.Chdir("/"))
	must(syscall.Mount("proc", "/proc", "proc", 0, ""))
	defer syscall.Unmount("/proc", 0)

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	syscall.Unmount("/proc", 0)
	if exit, ok := err.(*exec.ExitError); ok {
		os.Exit(exit.ExitCode())
	}
	must(err)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(125)
	}
}
