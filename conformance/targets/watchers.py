"""Programs that run beside the server and signal its processes where
timing matters, where no pause point of the extension serves: small perl
programs (perl is in every image and on every host that runs PostgreSQL's
own scripts) that read ``/proc`` as fast as a process changes.
``Target.kill_on_sight`` (a new process terminated on sight) and
``Target.stop_when_idle`` (a process stopped only asleep in a wait) run
them; the kit's other signals go through ``Target.kill``.
"""

#: ``Target.kill_on_sight``'s watcher: args first, title marker,
#: delay (us), timeout (s), ready file, pids to ignore; prints the pid it
#: terminated (exit 0), or exits 3 when none appeared
KILL_ON_SIGHT = r"""
use strict; use Time::HiRes qw(time);
my ($first, $marker, $delay, $timeout, $ready, @ignore) = @ARGV;
my %ignore = map { $_ => 1 } @ignore;
opendir(my $d, '/proc') or die "no /proc";
my %old = map { $_ => 1 } grep { /^\d+$/ } readdir $d;
open(my $r, '>', $ready) or die "$ready: $!"; close $r;
my $end = time + $timeout;
while (time < $end) {
    rewinddir $d;
    for my $p (grep { /^\d+$/ && !$old{$_} && !$ignore{$_} } readdir $d) {
        open(my $c, '<', "/proc/$p/cmdline") or next;
        my $cmd = <$c>; close $c;
        if (!defined $cmd || index($cmd, $marker) != 0) { next; }
        my $t0 = time;
        1 while (time - $t0) * 1e6 < $delay;
        kill 'TERM', $first; kill 'TERM', $p;
        print "$p\n"; exit 0;
    }
}
exit 3;
"""


#: ``Target.stop_when_idle``'s program.  Args: pid, timeout (s).  It stops
#: the process (SIGSTOP) and keeps it stopped only if it was asleep in a
#: wait of the kernel's (epoll, poll, select, a sleep), as ``/proc/PID/
#: syscall`` shows: a process stopped there holds no lock it takes around
#: its wait (a lock wait itself is a futex: it is resumed, and tried again
#: a millisecond later).  Exits 0 once stopped, 3 when not in time (the
#: process then resumed).
STOP_WHEN_IDLE = r"""
use strict; use POSIX (); use Time::HiRes qw(time sleep);
my ($pid, $timeout) = @ARGV;
sub give_up { kill 'CONT', $pid; exit 3; }
my %idle = (POSIX::uname())[4] eq 'aarch64'
    ? map { $_ => 1 } (22, 72, 73, 101, 115, 441)
    : map { $_ => 1 } (7, 23, 35, 230, 232, 270, 271, 281, 441);
my $end = time + $timeout;
while (time < $end) {
    kill 'STOP', $pid or exit 3;
    for (1 .. 100) {
        open(my $s, '<', "/proc/$pid/stat") or give_up();
        my $st = <$s>; close $s;
        last if $st =~ /\) T /;
    }
    open(my $f, '<', "/proc/$pid/syscall") or give_up();
    my ($nr) = split ' ', scalar <$f>; close $f;
    if (defined $nr && $idle{$nr}) { print "$nr\n"; exit 0; }
    kill 'CONT', $pid;
    sleep(0.001);
}
exit 3;
"""
