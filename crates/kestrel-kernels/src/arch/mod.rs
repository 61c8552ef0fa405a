//! SIMD kernels per architecture. Every function here is `unsafe` and requires the CPU
//! features named in its `#[target_feature]`; reach them through [`crate::dispatch`], which
//! detects the features first.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
