// Patched for compute-agent (see vendor/README.md in that repository).
//
// Upstream glommio implements the heavy side of its sleep/wake handshake
// with `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (or an mprotect trick),
// so that the waking side only needs a compiler fence. That syscall sends an
// IPI to every CPU running a thread of the process, and a reactor issues it
// every time it parks: with one park per request it cost ~18% of a reactor's
// CPU and slowed every other thread of the process. Here both sides use an
// ordinary sequentially consistent fence instead: the sleeper's fence is a
// few nanoseconds, and the waker pays one fence per wake-up (see
// `SleepNotifier::notify`), which is what the Dekker-style handshake needs.

use std::sync::atomic;

/// The waking side's barrier.
#[inline]
#[allow(dead_code)]
pub(crate) fn light() {
    atomic::fence(atomic::Ordering::SeqCst)
}

/// The sleeping side's barrier.
#[inline]
pub(crate) fn heavy() {
    atomic::fence(atomic::Ordering::SeqCst)
}
