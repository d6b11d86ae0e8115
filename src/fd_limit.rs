//! The open-file limit. systemd and most shells start services with a soft
//! limit of 1,024 and a much higher hard limit; a balancer polling
//! thousands of relays while serving listeners needs more, and raising the
//! soft limit up to the hard one needs no privilege.
#![allow(
    unsafe_code,
    reason = "getrlimit/setrlimit have no safe wrapper in std"
)]

/// The limit in force (soft, hard).
#[cfg(unix)]
// `rlim_t` is u64 on Linux but not on every Unix.
#[allow(clippy::unnecessary_cast)]
pub fn current() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

#[cfg(not(unix))]
pub fn current() -> std::io::Result<(u64, u64)> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now
/// in force (soft, hard).
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
pub(crate) fn raise() -> std::io::Result<(u64, u64)> {
    let (soft, hard) = current()?;
    let mut lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct passed in.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

#[cfg(not(unix))]
pub(crate) fn raise() -> std::io::Result<(u64, u64)> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Raises the limit and logs the outcome (a failure is not fatal: the
/// bounded poll still works under the default limit).
pub fn raise_and_log() {
    match raise() {
        Ok((soft, hard)) => tracing::debug!(soft, hard, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn soft_limit_reaches_the_hard_limit() {
        let (soft, hard) = super::raise().unwrap();
        assert_eq!(soft, hard);
    }
}
