// A devoxx-docker workshop solution written the way the workshop's finished runtime is:
// `run IMAGE CMD [ARG...]`, with the volume hard-coded. The parent re-executes itself as
// "child" in new UTS, PID, mount and network namespaces, then wires a veth pair with NAT and a
// cgroup v2 around it and tells the child to go on over a socketpair. The child bind-mounts the
// volume, switches root, mounts /proc, sets the hostname, waits for the parent, configures its
// end of the veth pair and runs the command.
//
// It keeps the finished runtime's volume bug on purpose: the bind mount is made with
// MS_BIND|MS_PRIVATE without first making `/` private. The kernel ignores MS_PRIVATE next to
// MS_BIND, so on an rshared `/` the mount propagates into the host's mount table, and it is
// never unmounted.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	hostVeth      = "veth0"
	containerVeth = "veth1"
	hostAddr      = "10.0.0.1/24"
	containerAddr = "10.0.0.2/24"
	gateway       = "10.0.0.1"
	subnet        = "10.0.0.0/24"
	hostname      = "devoxx-container"
	volumeSource  = "volume"  // relative to the runtime's working directory
	volumeTarget  = "/volume" // inside the container
	readyMessage  = "READY"
	// The child's PATH: after chroot, `ip` is busybox's applet in the image.
	childPath = "/sbin:/bin:/usr/sbin:/usr/bin"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run(os.Args[2:]))
	case "child":
		os.Exit(child(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "unknown command %s\n", os.Args[1])
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: devoxx-docker run IMAGE CMD [ARG...]")
	os.Exit(1)
}

// fail reports a runtime error; the caller exits 1, as log.Fatal would.
func fail(what string, err error) int {
	fmt.Fprintf(os.Stderr, "devoxx-docker: %s: %v\n", what, err)
	return 1
}

func rootfsOf(image string) string {
	return filepath.Join("/fs", image, "rootfs")
}

// run is the parent: it prepares the image, starts the child in its namespaces, puts it in a
// network and a cgroup, lets it go on and returns the command's exit code.
func run(args []string) int {
	if len(args) < 2 {
		usage()
	}
	image, command := args[0], args[1:]
	rootfs := rootfsOf(image)
	if _, err := os.Stat(rootfs); err != nil {
		return fail("image "+image, err)
	}

	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0755); err != nil {
		return fail("create etc", err)
	}
	resolv := filepath.Join(rootfs, "etc", "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 1.1.1.1\n"), 0644); err != nil {
		return fail("write resolv.conf", err)
	}
	if err := os.MkdirAll(filepath.Join(rootfs, volumeTarget), 0755); err != nil {
		return fail("create the volume's mount point", err)
	}

	ours, theirs, err := socketPair()
	if err != nil {
		return fail("socketpair", err)
	}
	defer ours.Close()

	// ExtraFiles[i] is fd 3+i in the child: tell it the number it will see.
	childArgs := append([]string{"child", strconv.Itoa(3), image}, command...)
	cmd := exec.Command("/proc/self/exe", childArgs...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS |
			syscall.CLONE_NEWNET,
	}
	if err := cmd.Start(); err != nil {
		theirs.Close()
		return fail("start the child", err)
	}
	theirs.Close()
	pid := cmd.Process.Pid

	// Setting up failed after the child started: it is still waiting for us, stop it.
	abort := func(what string, err error) int {
		cmd.Process.Kill()
		cmd.Wait()
		return fail(what, err)
	}

	defer deleteVeth()
	if err := createVeth(pid); err != nil {
		return abort("veth pair", err)
	}
	if err := iptablesNAT("-A"); err != nil {
		return abort("NAT rule", err)
	}
	defer iptablesNAT("-D")

	cgroup, err := joinCgroup(pid)
	if cgroup != "" {
		defer removeCgroup(cgroup)
	}
	if err != nil {
		return abort("cgroup", err)
	}

	// Everything is ready: the child may go on.
	if _, err := ours.Write([]byte(readyMessage)); err != nil {
		fmt.Fprintf(os.Stderr, "devoxx-docker: tell the child to go on: %v\n", err)
	}

	err = cmd.Wait()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return fail("wait for the child", err)
	}
	code := exitCode(cmd.ProcessState)
	fmt.Printf("Container exited with exit code %d\n", code)
	return code
}

// exitCode is the process's exit status, or 128+N when signal N killed it (as a shell says).
func exitCode(state *os.ProcessState) int {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}

func socketPair() (*os.File, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "parent-end"), os.NewFile(uintptr(fds[1]), "child-end"), nil
}

// runTool runs a helper program (ip, iptables) and returns its output in the error. Its stdin
// is empty without opening /dev/null: the image has no /dev/null once we are chrooted in it.
func runTool(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return nil
}

func linkExists(name string) bool {
	_, err := os.Lstat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// createVeth makes the veth pair, moves the container's end into the child's network
// namespace and brings the host's end up with its address.
func createVeth(pid int) error {
	if linkExists(hostVeth) {
		// Left over by a run that was killed before it could clean up.
		runTool("ip", "link", "delete", hostVeth)
	}
	steps := [][]string{
		{"link", "add", hostVeth, "type", "veth", "peer", "name", containerVeth},
		{"link", "set", containerVeth, "netns", strconv.Itoa(pid)},
		{"addr", "add", hostAddr, "dev", hostVeth},
		{"link", "set", hostVeth, "up"},
	}
	for _, s := range steps {
		if err := runTool("ip", s...); err != nil {
			return err
		}
	}
	return nil
}

// deleteVeth removes the host's end (and with it the pair). When the container's network
// namespace is gone the kernel may have removed the pair already: that is fine.
func deleteVeth() {
	if err := runTool("ip", "link", "delete", hostVeth); err != nil && linkExists(hostVeth) {
		fmt.Fprintf(os.Stderr, "devoxx-docker: remove the veth pair: %v\n", err)
	}
}

// iptablesNAT adds (-A) or deletes (-D) the masquerading rule for the containers' subnet.
func iptablesNAT(op string) error {
	err := runTool("iptables", "-t", "nat", op, "POSTROUTING", "-s", subnet, "-j", "MASQUERADE")
	if err != nil && op == "-D" {
		fmt.Fprintf(os.Stderr, "devoxx-docker: remove the NAT rule: %v\n", err)
	}
	return err
}

// joinCgroup creates the container's cgroup, writes its limits and moves pid into it. It returns
// the cgroup's path as soon as the directory exists, so the caller can remove it on failure.
func joinCgroup(pid int) (string, error) {
	path := fmt.Sprintf("/sys/fs/cgroup/mytoycontainer-%d", os.Getpid())
	if err := os.Mkdir(path, 0755); err != nil && !os.IsExist(err) {
		return "", err
	}
	settings := []struct{ file, value string }{
		{"memory.max", "104857600"}, // 100 MiB
		{"cpu.max", "50000 100000"}, // half a CPU: 50 ms every 100 ms
		{"cgroup.procs", strconv.Itoa(pid)},
	}
	for _, s := range settings {
		if err := os.WriteFile(filepath.Join(path, s.file), []byte(s.value), 0644); err != nil {
			return path, fmt.Errorf("write %s: %w", s.file, err)
		}
	}
	return path, nil
}

// removeCgroup deletes the cgroup once it is empty; the kernel may take a moment to notice the
// last process left.
func removeCgroup(path string) {
	var err error
	for i := 0; i < 50; i++ {
		err = os.Remove(path)
		if err == nil || os.IsNotExist(err) {
			return
		}
		if !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "devoxx-docker: remove cgroup %s: %v\n", path, err)
}

// child runs in the new namespaces as their first process and returns the command's exit
// code. Every return path goes through the deferred unmount of /proc.
func child(args []string) int {
	if len(args) < 3 {
		usage()
	}
	fd, err := strconv.Atoi(args[0])
	if err != nil {
		return fail("socket fd", err)
	}
	socket := os.NewFile(uintptr(fd), "child-end")
	defer socket.Close()
	image, command := args[1], args[2:]
	rootfs := rootfsOf(image)
	fmt.Printf("Running %s in %s\n", command[0], image)

	// The workshop's bug, kept on purpose: MS_PRIVATE given with MS_BIND is ignored, and `/`
	// was never made private (MS_REC|MS_PRIVATE), so this mount reaches the host.
	target := filepath.Join(rootfs, volumeTarget)
	if err := syscall.Mount(volumeSource, target, "", syscall.MS_BIND|syscall.MS_PRIVATE, ""); err != nil {
		return fail("mount the volume", err)
	}

	if err := syscall.Chroot(rootfs); err != nil {
		return fail("chroot", err)
	}
	if err := os.Chdir("/"); err != nil {
		return fail("chdir", err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		return fail("mount /proc", err)
	}
	defer unmountProc()

	if err := syscall.Sethostname([]byte(hostname)); err != nil {
		return fail("sethostname", err)
	}

	// The parent moves us into the cgroup and our veth end into our namespace, then says so.
	msg := make([]byte, len(readyMessage))
	if _, err := io.ReadFull(socket, msg); err != nil {
		return fail("wait for the parent", err)
	}
	if string(msg) != readyMessage {
		return fail("wait for the parent", fmt.Errorf("unexpected message %q", msg))
	}

	os.Setenv("PATH", childPath)
	if err := configureNetwork(); err != nil {
		return fail("network", err)
	}

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return fail("run "+command[0], err)
	}
	return exitCode(cmd.ProcessState)
}

// configureNetwork gives the container's veth end its address and a default route to the host.
func configureNetwork() error {
	steps := [][]string{
		{"addr", "add", containerAddr, "dev", containerVeth},
		{"link", "set", containerVeth, "up"},
		{"link", "set", "lo", "up"},
		{"route", "add", "default", "via", gateway},
	}
	for _, s := range steps {
		if err := runTool("ip", s...); err != nil {
			return err
		}
	}
	return nil
}

func unmountProc() {
	if err := syscall.Unmount("/proc", 0); err != nil {
		// Something still holds it (a process the command left behind): detach it.
		if err := syscall.Unmount("/proc", syscall.MNT_DETACH); err != nil {
			fmt.Fprintf(os.Stderr, "devoxx-docker: unmount /proc: %v\n", err)
		}
	}
}
