"""bench/perfsplit.py: `perf script -F comm,ip,sym,dso` text -> CPU by process, user / kernel,
kernel samples by entry, user samples by binary."""
from __future__ import annotations

from bench import perfsplit

SCRIPT = """\
swapper 
\tffffffff8224379b pv_native_safe_halt ([kernel.kallsyms])
\tffffffff813d09d6 do_idle ([kernel.kallsyms])

runc:[2:INIT] 
\tffffffff81a1 recently_deleted ([kernel.kallsyms])
\tffffffff81a2 __ext4_new_inode ([kernel.kallsyms])
\tffffffff81a3 __x64_sys_mkdirat ([kernel.kallsyms])
\tffffffff81a4 do_syscall_64 ([kernel.kallsyms])
\t7f00 [unknown] ([unknown])

runc:[2:INIT] 
\tffffffff81b1 clear_page_erms ([kernel.kallsyms])
\tffffffff81b2 asm_exc_page_fault ([kernel.kallsyms])
\t4d09 [unknown] (/usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4)

runc:[2:INIT] 
\t4d09 [unknown] (/usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4)

kctl-apiserver 
\t5a1 _PyEval_EvalFrameDefault+0x1a2 (/usr/lib/libpython3.11.so.1.0)

kworker/u8:2-ev 
\tffffffff81c1 process_one_work ([kernel.kallsyms])
\tffffffff81c2 ret_from_fork_asm ([kernel.kallsyms])

kworker/u8:3-ev 
\tffffffff81d1 _raw_spin_unlock_irqrestore ([kernel.kallsyms])
\tffffffff81d2 asm_sysvec_apic_timer_interrupt ([kernel.kallsyms])
"""


def test_busy_samples_by_process_user_kernel_and_entry():
    s = perfsplit.split(SCRIPT.splitlines(keepends=True))
    assert s.busy == 6                                     # the idle task is not busy
    assert dict(s.by_comm) == {"runc:[2:INIT]": 3, "kctl-apiserver": 1, "kworker/uN:N-ev": 2}
    assert s.kernel["runc:[2:INIT]"] == 2 and s.kernel["kctl-apiserver"] == 0
    assert s.entries[("runc:[2:INIT]", "mkdirat")] == 1
    assert s.entries[("runc:[2:INIT]", "page fault")] == 1
    assert s.entries[("kworker/uN:N-ev", "ret_from_fork_asm")] == 1
    assert s.entries[("kworker/uN:N-ev", "interrupt")] == 1
    assert s.binaries[("runc:[2:INIT]", "/usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4")] == 1
    assert s.binaries[("kctl-apiserver", "/usr/lib/libpython3.11.so.1.0")] == 1


def test_report_names_the_shares_and_ends_with_its_result_line():
    text = perfsplit.report(perfsplit.split(SCRIPT.splitlines()), ["runc:[2:INIT]"])
    assert "  50.0%  runc:[2:INIT]          user  16.7%  kernel  33.3%" in text
    assert "  16.7%  mkdirat" in text and "  16.7%  page fault" in text
    assert text.splitlines()[-1] == ("RESULT busy_samples=6 top=runc:[2:INIT]:50.0,kworker/uN:N-ev:33.3,"
                                     "kctl-apiserver:16.7")
    assert perfsplit.report(perfsplit.split([]), []).endswith("RESULT busy_samples=0 top=")


def test_with_pids_a_thread_counts_for_its_process_named_by_its_main_thread():
    script = """\
kctl-apiserver  100/100
\t5a1 _PyEval_EvalFrameDefault (/usr/lib/libpython3.11.so.1.0)

event_engine  100/104
\tffffffff81e1 tcp_sendmsg ([kernel.kallsyms])
\tffffffff81e2 __x64_sys_sendmsg ([kernel.kallsyms])

event_engine  200/203
\t61 [unknown] (/venv/grpc/_cython/cygrpc.so)

swapper     0/0
\tffffffff8224379b pv_native_safe_halt ([kernel.kallsyms])
"""
    s = perfsplit.split(script.splitlines())
    assert dict(s.by_comm) == {"kctl-apiserver": 2, "event_engine": 1}   # pid 200's main thread unseen
    assert s.entries[("kctl-apiserver", "sendmsg")] == 1


def test_a_main_thread_keeps_its_own_name_across_exec():
    """runc init becomes the container's process (exec renames the same pid): each sample keeps
    the name it had; its Go threads, named like it, stay runc init."""
    script = """\
runc:[2:INIT]  300/300
\t4d09 [unknown] (/usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4)

runc:[2:INIT]  300/302
\t4d0a [unknown] (/)

echo-server  300/300
\t61 [unknown] (/bin/busybox)

echo-server  300/300
\t62 [unknown] (/bin/busybox)
"""
    assert dict(perfsplit.split(script.splitlines()).by_comm) == {"runc:[2:INIT]": 2, "echo-server": 2}
