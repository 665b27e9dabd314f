"""The sandbox argument builder is a pure function: a policy in, the exact bubblewrap vector out."""

from __future__ import annotations

from pathlib import Path

from midstream.sandbox.bwrap import Bind, Link, SandboxPolicy, bwrap_argv, launch_argv
from midstream.sandbox.protected import protected_name, protected_paths

POLICY = SandboxPolicy(
    bwrap="/usr/bin/bwrap",
    workspace=Path("/home/p/ws"),
    writable=True,
    network=False,
    disable_userns=True,
    seccomp_fd=7,
    system=(Bind("/usr", "/usr"), Bind("/etc", "/etc")),
    links=(Link("usr/bin", "/bin"),),
    tmpfs=("/tmp", "/var/tmp"),
    home="/home/p",
    read_only=(Bind("/home/p/.rustup", "/home/p/.rustup", "a toolchain"),),
    writable_binds=(Bind("/c/ws-cache", "/home/p/.cache", "private cache", writable=True),),
    protected=(Bind("/home/p/ws/.git", "/home/p/ws/.git", "git config"),
               Bind("/tmp/empty", "/home/p/ws/.hg", "pinned")),
    hidden=(Bind("/dev/null", "/etc/shadow", "a host secret"),),
    env=(("HOME", "/home/p"), ("PATH", "/usr/bin")),
)


def test_a_policy_becomes_exactly_this_vector_in_bubblewraps_order():
    assert bwrap_argv(POLICY, ["bash", "-c", "make"]) == [
        "/usr/bin/bwrap",
        "--unshare-user", "--cap-drop", "ALL", "--disable-userns",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--new-session",
        "--die-with-parent",
        "--unshare-net",
        "--seccomp", "7",
        "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
        "--symlink", "usr/bin", "/bin",
        "--dev", "/dev", "--proc", "/proc",
        "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
        "--tmpfs", "/home/p",
        "--bind", "/home/p/ws", "/home/p/ws",
        "--ro-bind", "/home/p/.rustup", "/home/p/.rustup",
        "--bind", "/c/ws-cache", "/home/p/.cache",
        "--ro-bind", "/home/p/ws/.git", "/home/p/ws/.git",
        "--ro-bind", "/tmp/empty", "/home/p/ws/.hg",
        "--ro-bind", "/dev/null", "/etc/shadow",
        "--clearenv", "--setenv", "HOME", "/home/p", "--setenv", "PATH", "/usr/bin",
        "--chdir", "/home/p/ws", "--", "bash", "-c", "make",
    ]


def test_read_only_network_and_no_home_change_only_their_own_arguments():
    from dataclasses import replace

    changed = replace(POLICY, writable=False, network=True, home="", seccomp_fd=None, disable_userns=False)
    expected = bwrap_argv(POLICY, ["true"])
    for gone in (["--disable-userns"], ["--unshare-net"], ["--seccomp", "7"], ["--tmpfs", "/home/p"]):
        at = next(i for i in range(len(expected)) if expected[i:i + len(gone)] == gone)
        del expected[at:at + len(gone)]
    expected[expected.index("--bind")] = "--ro-bind"  # the workspace, and only it
    assert bwrap_argv(changed, ["true"]) == expected


def test_the_limits_wrapper_and_a_prefix_go_in_front_in_that_order():
    from dataclasses import replace

    policy = replace(POLICY, prefix=("unshare", "--user", "--map-root-user", "--mount", "--"))
    argv = launch_argv(policy, ["true"], ["/bin/sh", "-c", "join", "x", "--"])
    assert argv[:10] == ["/bin/sh", "-c", "join", "x", "--", "unshare", "--user", "--map-root-user", "--mount", "--"]
    assert argv[10:] == bwrap_argv(policy, ["true"])


def test_one_list_of_protected_paths_at_the_root_and_at_any_depth(tmp_path):
    (tmp_path / "vendor" / "lib" / ".git").mkdir(parents=True)
    (tmp_path / "deep" / "a" / ".hg").mkdir(parents=True)
    found = {p.path.relative_to(tmp_path.resolve()).as_posix(): p.reason for p in protected_paths(tmp_path)}
    assert {".git", ".hg", ".jj", ".gitmodules", ".midstream", "vendor/lib/.git", "deep/a/.hg"} <= set(found)
    assert all(found.values())  # every one has its reason
    (tmp_path / "later" / ".jj").mkdir(parents=True)  # made after the first look: found by the next
    assert any(p.path.name == ".jj" and "later" in p.path.parts for p in protected_paths(tmp_path))
    assert protected_name(("src", ".git", "config")) and protected_name((".hg", "hgrc"))
    assert protected_name((".gitmodules",)) and not protected_name(("src", ".gitmodules"))
    assert protected_name((".midstream", "settings.toml")) and not protected_name(("src", "main.py"))
