//! The `edge-router` command: `run` a pipeline, `validate` a config, and the other commands of
//! [`cli`]. This file holds what the whole process shares: the allocator and the output macros.

/// `eprintln!` that never panics: a standard error closed early (`2>&1 | head`) must not stop
/// the router; what cannot be written is lost, the pipeline goes on.
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics (see `say_err!`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(unsafe_code)]
mod allocator {
    //! Giving memory back to the system after a burst. mimalloc frees pages back to its arenas
    //! and purges them (`MADV_DONTNEED`) only after a delay, on a later allocator call; when
    //! the threads that freed them go idle after a burst (network sources' workers), nothing
    //! makes that call and the memory stays resident. The supervisor calls `collect` every
    //! second: it runs the purges that are due, for all arenas.

    unsafe extern "C" {
        /// mimalloc's `mi_collect`: collects the calling thread's heap and purges what is due
        /// in the arenas. Part of the mimalloc library linked through the `mimalloc` crate.
        fn mi_collect(force: bool);
    }

    /// Runs mimalloc's due purges (cheap when there is nothing to do).
    pub fn collect() {
        // SAFETY: `mi_collect` has no preconditions; it may be called from any thread at any
        // time while mimalloc is the allocator (it is: `GLOBAL`).
        unsafe { mi_collect(false) }
    }
}

fn main() -> std::process::ExitCode {
    cli::main()
}
