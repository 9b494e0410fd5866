//! CPU time clocks and context switches (Linux), for the NIF's call accounting and the
//! bench's CPU per message.

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out pointer; both clocks used here exist on every Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the calling thread (ns).
pub fn thread_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Voluntary context switches of the calling thread so far: the times it waited (a lock
/// held by another thread, a page the kernel had to wait for, a sleep), apart from the
/// OS giving its CPU to another thread. One `getrusage` call (~0.3 µs); its CPU times are
/// not used: they advance only at the scheduler's ticks while the thread runs,
/// [`thread_ns`] is exact.
pub fn thread_waits() -> u64 {
    // SAFETY: all-zero is a valid rusage; valid out pointer.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD exists on Linux 2.6.26 and later.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_nvcsw as u64
}

/// CPU time of the whole process, every thread (librdkafka's included), in ns.
pub fn process_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

#[cfg(test)]
mod tests {
    #[test]
    fn clocks_advance_with_work() {
        let (p0, t0) = (super::process_ns(), super::thread_ns());
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(super::thread_ns() > t0);
        assert!(super::process_ns() >= p0 + (super::thread_ns() - t0) / 2);
    }

    #[test]
    fn a_sleep_is_a_wait() {
        let w0 = super::thread_waits();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let w1 = super::thread_waits();
        assert!(w1 > w0, "{w0} -> {w1}");
    }
}
