//! Limits shared by every layer. Each one bounds something a client could otherwise grow
//! without end on the host.

/// Aiven's documented limit of read replicas per primary service.
pub const MAX_READ_REPLICAS: usize = 5;

/// Default cap on services per project: each is a process and a port on this host, so a
/// runaway client must not be able to fork the host to death.
pub const DEFAULT_MAX_SERVICES_PER_PROJECT: usize = 50;

/// Largest request body the API accepts (413 above it). The biggest legitimate body, a
/// service create with user_config, is well under 10 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest write pause on a primary during a promotion, unless configured otherwise.
pub const DEFAULT_PROMOTION_PAUSE_MS: u64 = 2000;

/// How long a promotion waits for the primary to answer a PING before it asks the runtime
/// whether the primary's process runs at all (down: detach at once; alive: 503
/// `primary_unresponsive`, unless the request is lossy).
pub const DEFAULT_PROMOTION_PING_TIMEOUT_MS: u64 = 1000;
