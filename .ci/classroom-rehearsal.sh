#!/usr/bin/env bash
# classroom-rehearsal.sh [--phase build|grade] [OUT] — GitHub Classroom's workflow (docs/classroom/classroom.yml) run
# the way a hosted runner runs it, then its results checked against the reporter's format and the
# grading's report. What a hosted runner is, rehearsed here without changing this machine (all in
# a mount namespace of its own: /etc/passwd, /etc/group, /etc/shadow and /etc/sudoers.d are
# copies there):
#   - a non-root user with passwordless sudo, whose sudo resets the environment (Debian's
#     env_reset and secure_path); its toolchain in its home (RUSTUP_HOME, CARGO_HOME as
#     dtolnay/rust-toolchain leaves them; this machine's rustup toolchains, read-only);
#   - the checkouts: this repository's files as `grader/`, a submission as `submission/` — a
#     workshop runtime with a Makefile that sets the memory limit but no CPU limit, so it fails
#     two of the cgroups step's five checks and network, and passes every other step;
#   - the workflow's own `run:` steps, read from the file: the build step with the runner's
#     environment, then the grade step with only PATH (without cargo) and HOME, the workflow's
#     `env:` and GITHUB_OUTPUT, and no network at all (a network namespace with only lo down).
# Then every `<step>=…` line of GITHUB_OUTPUT is decoded and checked: the reporter's fields, one
# result per runner the reporter is given, each test one check of report.json with its share of
# the step's points when it passed, points adding up, partial credit in cgroups, and a run that
# the reporter turns red only for a failed required step (never for network). Run as root by
# .ci/run; about 3 minutes here (the grader's release build as that user, one guest boot).
# --phase build stops after the build step, --phase grade runs the grade step and the checks on
# what an earlier --phase build left in OUT: .ci/run builds at idle CPU priority while the test
# guest runs, and grades afterwards.
set -euo pipefail
phase=all
if [ "${1:-}" = --phase ]; then phase="${2:-}"; shift 2 || true; fi
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
out="$(realpath -m "${1:-$repo/target/classroom-rehearsal}")"
workflow="$repo/docs/classroom/classroom.yml"
say() { echo "classroom-rehearsal: $*"; }
die() { say "error: $*" >&2; exit 2; }

case "$phase" in all | build | grade) ;; *) die "--phase build or --phase grade, not '$phase'" ;; esac
[ "$(id -u)" = 0 ] || die "run as root"
command -v sudo >/dev/null || die "sudo missing (apt-get install sudo)"
python3 -c 'import yaml' 2>/dev/null || die "python3-yaml missing (apt-get install python3-yaml)"

# Inside a mount namespace of our own: the runner user exists only here.
if [ "${REHEARSAL_MNTNS:-}" != "$$" ]; then
    REHEARSAL_MNTNS=$$ exec unshare --mount --propagation private -- "$BASH" "$0" --phase "$phase" "$@"
fi

user=devoxx-runner
uid=64999
getent passwd "$uid" >/dev/null && die "uid $uid is taken on this machine: the rehearsed runner needs a free one"
home="$out/home/$user"
ws="$out/work"
if [ "$phase" = grade ]; then
    [ -f "$out/built" ] || die "no build in $out: run --phase build first"
else
    rm -rf "$out"
fi
mkdir -p "$home" "$ws" "$out/etc"

# The user, its group and its passwordless sudo, in copies bound over the real files (PAM's
# account check reads /etc/shadow too).
cp /etc/passwd /etc/group /etc/shadow "$out/etc/"
echo "$user:x:$uid:$uid:rehearsed runner:$home:/bin/bash" >> "$out/etc/passwd"
echo "$user:x:$uid:" >> "$out/etc/group"
echo "$user:*:20000:0:99999:7:::" >> "$out/etc/shadow" # no password, as a hosted runner's user
mkdir -p "$out/etc/sudoers.d"
cp -a /etc/sudoers.d/. "$out/etc/sudoers.d/" 2>/dev/null || true
echo "$user ALL=(ALL) NOPASSWD: ALL" > "$out/etc/sudoers.d/$user"
chmod 440 "$out/etc/sudoers.d/$user"
mount --bind "$out/etc/passwd" /etc/passwd
mount --bind "$out/etc/group" /etc/group
mount --bind "$out/etc/shadow" /etc/shadow
mount --bind "$out/etc/sudoers.d" /etc/sudoers.d

prepare() {
    # The toolchain in the user's home, as dtolnay/rust-toolchain leaves it: rustup's toolchains
    # (this machine's, read-only), CARGO_HOME with the proxies and a copy of the registry.
    rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
    cargo_home="${CARGO_HOME:-$HOME/.cargo}"
    if [ ! -d "$rustup_home/toolchains" ] || [ ! -d "$cargo_home/bin" ]; then
        die "no rustup toolchain in $rustup_home / $cargo_home"
    fi
    mkdir -p "$home/.rustup" "$home/.cargo"
    mount --bind "$rustup_home" "$home/.rustup"
    mount -o remount,bind,ro "$home/.rustup"
    cp -a "$cargo_home/bin" "$home/.cargo/"
    [ -d "$cargo_home/registry" ] && cp -a "$cargo_home/registry" "$home/.cargo/"

    # The checkouts: the grader's files as they are here (committed or not), and the submission.
    mkdir -p "$ws/grader" "$ws/submission"
    git -C "$repo" ls-files -co --exclude-standard -z | tar -C "$repo" --null -T - -cf - | tar -C "$ws/grader" -xf -
    "$repo/tests/grader/make-runtimes.sh" "$out/runtimes" >/dev/null
    cp "$out/runtimes/no-cpu-limit" "$ws/submission/devoxx-docker.sh"
    printf 'all:\n\tmkdir -p bin\n\tcp devoxx-docker.sh bin/devoxx-docker\n\tchmod 755 bin/devoxx-docker\n' > "$ws/submission/Makefile"
    chown -R "$uid:$uid" "$home" "$ws" 2>/dev/null || true # (the read-only toolchain stays root's)
    : > "$out/github_output"
    chown "$uid:$uid" "$out/github_output"

    # The workflow's env and run steps, and what the reporter is given.
    python3 - "$workflow" "$out" <<'EOF'
import sys, yaml, shlex
wf = yaml.safe_load(open(sys.argv[1]))
out = sys.argv[2]
job = next(iter(wf["jobs"].values()))
steps = {s.get("id"): s for s in job["steps"] if s.get("id")}
for sid in ("build", "grade"):
    assert "run" in steps[sid], f"step {sid} has no run:"
    open(f"{out}/{sid}.sh", "w").write(steps[sid]["run"])
with open(f"{out}/workflow.env", "w") as f:
    for k, v in wf.get("env", {}).items():
        f.write(f"{k}={v}\n")
rep = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("classroom-resources/autograding-grading-reporter"))
with open(f"{out}/reporter.txt", "w") as f:
    f.write(rep["with"]["runners"] + "\n")
    for k, v in rep["env"].items():
        f.write(f"{k}={v}\n")
EOF
}

base_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# run_step NAME ENV...: the workflow's step NAME as the runner user (bash -e, as Actions runs it).
run_step() {
    local name="$1" rc=0
    shift
    say "step $name: $(head -c 300 "$out/$name.sh" | tr '\n' ';')"
    (cd "$ws" && setpriv --reuid="$uid" --regid="$uid" --init-groups \
        env -i "$@" "${wf_env[@]}" GITHUB_WORKSPACE="$ws" GITHUB_OUTPUT="$out/github_output" RUNNER_OS=Linux \
        bash -e "$out/$name.sh") > "$out/$name.log" 2>&1 || rc=$?
    tail -n 5 "$out/$name.log" | sed 's/^/  | /'
    [ "$rc" = 0 ] || die "step $name failed ($rc): $out/$name.log"
}

[ "$phase" = grade ] || prepare
mapfile -t wf_env < "$out/workflow.env"
# REHEARSAL_WORKSHOP=PATH (in this repository): the workflow's optional WORKSHOP input, set as a
# teacher sets it (default: the workflow's own value, empty: the devoxx workshop).
[ -z "${REHEARSAL_WORKSHOP:-}" ] || wf_env=("${wf_env[@]/#WORKSHOP=*/WORKSHOP=$REHEARSAL_WORKSHOP}")
if [ "$phase" != grade ]; then
    t0=$SECONDS
    run_step build HOME="$home" PATH="$home/.cargo/bin:$base_path" CARGO_HOME="$home/.cargo" RUSTUP_HOME="$home/.rustup"
    t_build=$((SECONDS - t0))
    say "build step ${t_build}s"
    touch "$out/built"
    [ "$phase" = build ] && exit 0
fi
# The grade step: no cargo on PATH, no toolchain variable, no network.
t0=$SECONDS
unshare --net -- "$BASH" -c "$(declare -f run_step say die); $(declare -p out ws uid wf_env); run_step grade HOME='$home' PATH='$base_path'"
t_grade=$((SECONDS - t0))
say "grade step ${t_grade}s"
builds="$(grep -c '^grade: building ' "$out/grade.log" || true)"
boots="$(grep -c '^grade: booting the grading guest' "$out/grade.log" || true)"
[ "$builds" = 1 ] && [ "$boots" = 1 ] || die "one push must cost one build and one boot: $builds build(s), $boots boot(s) ($out/grade.log)"
say "one build of the submission, one guest boot"

# The results, against the reporter's format and the report.
python3 - "$out/github_output" "$out/reporter.txt" "$ws/grade-report/report.json" "${wf_env[@]}" <<'EOF'
import sys, json, base64
lines = [l for l in open(sys.argv[1]).read().splitlines() if l]
reporter = open(sys.argv[2]).read().splitlines()
report = json.load(open(sys.argv[3]))
env = dict(a.split("=", 1) for a in sys.argv[4:])
points = dict((s, int(p)) for s, p in (i.split("=") for i in env["POINTS"].split(",")))
runners = reporter[0].split(",")
mapping = dict(l.split("=", 1) for l in reporter[1:])
outputs = dict(l.split("=", 1) for l in lines)
problems = []
def expect(ok, what):
    if not ok:
        problems.append(what)
expect("WORKSHOP" in env, "the workflow's env has the optional WORKSHOP input")
expect(sorted(runners) == sorted(points), f"the reporter's runners {runners} are the steps given points {sorted(points)}")
red = False
for runner in runners:
    ref = mapping.get(f"{runner.upper()}_RESULTS", "")
    expect(ref == "${{ steps.grade.outputs.%s }}" % runner, f"{runner}: the reporter reads the grade step's output {runner} ({ref!r})")
    r = json.loads(base64.b64decode(outputs[runner]))
    expect(r["version"] == 1 and r["max_score"] == points[runner], f"{runner}: version 1, max_score {points[runner]}")
    tests = r["tests"]
    for t in tests:
        expect(set(t) >= {"name", "status", "score", "message", "line_no"} and t["status"] in ("pass", "fail") and isinstance(t["score"], int), f"{runner}: test fields {t}")
    step = report["steps"][runner]
    checks = step["checks"]
    expect([t["name"] for t in tests] == [c["name"] for c in checks], f"{runner}: one test per check of report.json")
    n = len(checks)
    for i, (t, c) in enumerate(zip(tests, checks)):
        share = points[runner] * (i + 1) // n - points[runner] * i // n
        want = share if c["status"] == "pass" else 0
        expect(t["score"] == want and (t["status"] == "pass") == (c["status"] == "pass"), f"{runner}/{c['name']}: score {t['score']}, want {want}")
        if c["status"] != "pass":
            expect(c["seen"] in t["message"] and c["hint"] in t["message"], f"{runner}/{c['name']}: the message has what was seen and the hint")
    score = sum(t["score"] for t in tests)
    passed = step["status"] == "pass"
    expect((score == points[runner]) == passed, f"{runner}: {score}/{points[runner]} points, step {step['status']}")
    required = step["required"]
    want = "pass" if passed else ("fail" if required else "optional")
    expect(r["status"] == want, f"{runner}: status {r['status']}, want {want}")
    red |= r["status"] in ("fail", "error")
    print(f"classroom-rehearsal: {runner}: {r['status']}, {score}/{points[runner]} points ({sum(t['status'] == 'pass' for t in tests)}/{n} checks)")
s = report["steps"]
expect(all(s[x]["status"] == "pass" for x in ("process", "namespaces", "rootfs", "volumes")), "the submission passes process, namespaces, rootfs and volumes")
cg = sum(t["score"] for t in json.loads(base64.b64decode(outputs["cgroups"]))["tests"])
expect(0 < cg < points["cgroups"], f"partial credit in cgroups ({cg}/{points['cgroups']})")
expect(s["network"]["status"] != "pass" and json.loads(base64.b64decode(outputs["network"]))["status"] == "optional", "network failed, and says optional (never red)")
expect(red, "the reporter turns the run red for the failed cgroups step")
for p in problems:
    print("classroom-rehearsal: FAIL " + p)
sys.exit(1 if problems else 0)
EOF
say "ok: the workflow's build and grade steps ran as a hosted runner runs them, and the reporter gets what it reads"
