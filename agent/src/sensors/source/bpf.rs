//! What the eBPF sources share: loading a checked-in object (CO-RE against
//! the running kernel's BTF) and attaching its raw tracepoints, and reading
//! a ring buffer together with the kernel's count of what did not fit.

use std::os::fd::AsFd;

use aya::maps::{MapData, PerCpuArray, RingBuf};

/// Loads `object` and attaches each (program, raw tracepoint) of `programs`.
/// `Err`: why eBPF cannot run here, for the sensor's health.
pub(super) fn load(object: &[u8], programs: &[(&str, &str)]) -> Result<aya::Ebpf, String> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("no kernel BTF ({e})"))?;
    let mut ebpf = aya::EbpfLoader::new()
        .btf(Some(&btf))
        .load(object)
        .map_err(|e| {
            format!("loading the program: {e} (needs root, or CAP_BPF and CAP_PERFMON)")
        })?;
    drop(btf);
    for (program, tracepoint) in programs {
        let p: &mut aya::programs::RawTracePoint = ebpf
            .program_mut(program)
            .ok_or_else(|| format!("the object has no program {program}"))?
            .try_into()
            .map_err(|e| format!("{program}: {e}"))?;
        p.load()
            .map_err(|e| format!("{program}: the verifier refused it: {e}"))?;
        p.attach(tracepoint)
            .map_err(|e| format!("{program}: attaching to {tracepoint}: {e}"))?;
    }
    // The kernel's BTF, parsed for the relocations, is freed: give it back.
    crate::host::memory::return_freed_memory();
    Ok(ebpf)
}

/// A ring buffer and the per-CPU counter of records the kernel could not put in it.
pub(super) struct Ring {
    ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    /// The counter's total as last read.
    counted: u64,
}

impl Ring {
    /// Takes the maps named `ring` and `drops` out of `ebpf`.
    pub(super) fn take(ebpf: &mut aya::Ebpf, ring: &str, drops: &str) -> Result<Self, String> {
        let ring = ebpf
            .take_map(ring)
            .ok_or_else(|| format!("eBPF: the program has no map {ring}"))
            .and_then(|m| RingBuf::try_from(m).map_err(|e| format!("eBPF: {ring}: {e}")))?;
        let drops = ebpf
            .take_map(drops)
            .ok_or_else(|| format!("eBPF: the program has no map {drops}"))
            .and_then(|m| PerCpuArray::try_from(m).map_err(|e| format!("eBPF: {drops}: {e}")))?;
        Ok(Self {
            ring,
            drops,
            counted: 0,
        })
    }

    /// Waits up to a second for records and hands each to `each`; returns
    /// how many records the kernel dropped since the last call.
    pub(super) fn poll(&mut self, mut each: impl FnMut(&[u8])) -> Result<u64, nix::Error> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let ready = {
            let mut fds = [PollFd::new(self.ring.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(1000u16))
        };
        match ready {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        while let Some(item) = self.ring.next() {
            each(&item);
        }
        // Every slot of the counter (the exec probe counts execs and forks apart).
        let total = (0..self.drops.len())
            .filter_map(|i| self.drops.get(&i, 0).ok())
            .map(|v| v.iter().sum::<u64>())
            .sum::<u64>()
            .max(self.counted);
        let new = total.saturating_sub(self.counted);
        self.counted = total;
        Ok(new)
    }
}
