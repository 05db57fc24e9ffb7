//! The shim's collectives between two ranks on 127.0.0.1 (two threads, each with its own
//! group: Gloo does not care whether its peers share a process), with exact values.
//!
//! Most tests meet at a store hosted on a port the kernel chose ([`on_two_ranks`]): a port
//! found free and then bound later can be taken in between by one of the many sockets Gloo
//! opens for the tests running alongside. Rank 0 hosting the store itself is tested once.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};
use uic_c10d::{Group, Launch, Rendezvous, StoreServer};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A store for `world` ranks on a port the kernel chose, and the rendezvous of rank `rank`
/// there (as under torchrun's agent: every rank a client).
fn hosted_store(world: usize) -> (StoreServer, u16) {
    let store = StoreServer::host(0, world, Duration::from_secs(60)).expect("hosting a store");
    let port = store.port();
    assert_ne!(port, 0);
    (store, port)
}

fn client_of(port: u16, rank: usize, world: usize) -> Rendezvous {
    Rendezvous {
        agent_store: true,
        timeout: Duration::from_secs(30),
        ..Rendezvous::loopback(port, rank, world)
    }
}

/// Runs `f(group)` on ranks 0 and 1 of a fresh group and returns their results.
fn on_two_ranks<T: Send + 'static>(f: fn(&Group) -> T) -> Vec<T> {
    let (_store, port) = hosted_store(2);
    let hs: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || {
                let g = Group::connect(&client_of(port, rank, 2)).expect("rendezvous");
                assert_eq!((g.rank(), g.world()), (rank, 2));
                f(&g)
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

/// A tensor's values as f64 (exact for the small integers and halves used here).
fn values(t: &Tensor) -> Vec<f64> {
    Vec::try_from(&t.flatten(0, -1).to_kind(Kind::Double)).unwrap()
}

#[test]
fn allreduce_sums_every_bucket_exactly() {
    let got = on_two_ranks(|g| {
        let r = g.rank() as f32;
        // Two buckets of different shapes and a third of another type.
        let mut ts = [
            Tensor::from_slice(&[1.0f32 + r, 10.0 * r, -0.5]),
            Tensor::from_slice(&[r; 6]).view([2, 3]),
            Tensor::from_slice(&[3i64 + g.rank() as i64]),
        ];
        g.allreduce_sum(&mut ts).unwrap();
        (values(&ts[0]), values(&ts[1]), ts[1].size(), values(&ts[2]))
    });
    for (a, b, shape, c) in got {
        assert_eq!(a, [3.0, 10.0, -1.0]);
        assert_eq!(b, [1.0; 6]);
        assert_eq!(shape, [2, 3]);
        assert_eq!(c, [7.0]);
    }
}

#[test]
fn broadcast_copies_the_roots_tensors_with_rank_0_hosting_the_store() {
    let port = free_port();
    let hs: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || {
                let mut r = Rendezvous::loopback(port, rank, 2);
                r.timeout = Duration::from_secs(30);
                let g = Group::connect(&r).expect("rendezvous");
                let mut ts = [
                    Tensor::from_slice(&[g.rank() as f64 + 0.25; 4]),
                    Tensor::zeros([2], (Kind::Int64, tch::Device::Cpu)) + g.rank() as i64 * 5,
                ];
                g.broadcast(&mut ts, 1).unwrap();
                (values(&ts[0]), values(&ts[1]))
            })
        })
        .collect();
    for h in hs {
        let (a, b) = h.join().unwrap();
        assert_eq!(a, [1.25; 4]);
        assert_eq!(b, [5.0, 5.0]);
    }
}

#[test]
fn allgather_stacks_the_ranks_in_order() {
    let got = on_two_ranks(|g| {
        let r = g.rank() as i64;
        let t = Tensor::from_slice(&[r, r * 10, r * 100]).view([3, 1]);
        let out = g.allgather(&t).unwrap();
        g.barrier().unwrap();
        (out.size(), values(&out))
    });
    for (shape, v) in got {
        assert_eq!(shape, [2, 3, 1]);
        assert_eq!(v, [0.0, 0.0, 0.0, 1.0, 10.0, 100.0]);
    }
}

#[test]
fn a_missing_peer_is_an_error_within_the_timeout() {
    let mut r = Rendezvous::loopback(free_port(), 0, 2);
    r.timeout = Duration::from_secs(2);
    let t = Instant::now();
    let e = Group::connect(&r).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(e.op, "rendezvous");
    assert!(!e.message.is_empty());
    assert!(
        !e.message.contains("frame #"),
        "a C++ backtrace leaked: {e}"
    );
}

#[test]
fn a_peer_that_leaves_fails_the_pending_collective() {
    let got = on_two_ranks(|g| {
        if g.rank() == 1 {
            return None; // leaves: its group is dropped, its connections close
        }
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let mut ts = [Tensor::from_slice(&[1.0f32])];
        let e = g.allreduce_sum(&mut ts).unwrap_err();
        Some((e, t.elapsed()))
    });
    let (e, took) = got[0].clone().unwrap();
    assert_eq!(e.op, "allreduce");
    assert!(
        took < Duration::from_secs(29),
        "waited {took:?}: the timeout, not the closed peer"
    );
    assert!(e.to_string().starts_with("allreduce failed: "), "{e}");
}

#[test]
fn bad_arguments_are_refused_before_any_network() {
    let e = Group::connect(&Rendezvous::loopback(1, 2, 2)).unwrap_err();
    assert_eq!(e.message, "rank 2 is not below world size 2");
}

#[test]
fn ranks_join_an_agents_store_under_torchruns_prefix() {
    // torchrun's agent hosts the store on MASTER_PORT; the ranks must not try to host it
    // too (that fails with EADDRINUSE), and their keys live under the restart's prefix.
    let (_agent, port) = hosted_store(2);
    let hs: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || {
                let vars = [
                    ("RANK", rank.to_string()),
                    ("WORLD_SIZE", "2".to_string()),
                    ("LOCAL_RANK", rank.to_string()),
                    ("MASTER_ADDR", "127.0.0.1".to_string()),
                    ("MASTER_PORT", port.to_string()),
                    ("TORCHELASTIC_RUN_ID", "test".to_string()),
                    ("TORCHELASTIC_USE_AGENT_STORE", "True".to_string()),
                    ("TORCHELASTIC_RESTART_COUNT", "1".to_string()),
                ];
                let launch = Launch::from_vars(|k| {
                    vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
                })
                .unwrap()
                .unwrap();
                let g = Group::connect(&launch.rendezvous(Duration::from_secs(30))).unwrap();
                let mut t = [Tensor::from_slice(&[rank as f32 + 1.0])];
                g.allreduce_sum(&mut t).unwrap();
                values(&t[0])
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), [3.0]);
    }
}

#[test]
fn many_groups_in_one_process_issue_collectives_at_once() {
    // Every group's first collective registers it in libtorch's process-wide flight
    // recorder, which is not safe against two groups doing so at once (the shim serialises
    // issuing). Rounds of four fresh groups of two ranks, released together by a yielding
    // barrier so that the threads on the CPUs issue within microseconds of each other.
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const GROUPS: usize = 4;
    const ROUNDS: usize = 6;
    for _ in 0..ROUNDS {
        let arrived = Arc::new(AtomicUsize::new(0));
        let stores: Vec<_> = (0..GROUPS).map(|_| hosted_store(2)).collect();
        let hs: Vec<_> = stores
            .iter()
            .flat_map(|&(_, port)| {
                let arrived = arrived.clone();
                (0..2).map(move |rank| {
                    let arrived = arrived.clone();
                    std::thread::spawn(move || {
                        let g = Group::connect(&client_of(port, rank, 2));
                        // Counted even on failure, so no thread waits for one that gave up.
                        arrived.fetch_add(1, Ordering::SeqCst);
                        let deadline = Instant::now() + Duration::from_secs(60);
                        while arrived.load(Ordering::SeqCst) < 2 * GROUPS
                            && Instant::now() < deadline
                        {
                            std::thread::yield_now();
                        }
                        let mut t = [Tensor::from_slice(&[rank as f32 + 1.0])];
                        g.expect("rendezvous").allreduce_sum(&mut t).unwrap();
                        values(&t[0])
                    })
                })
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), [3.0]);
        }
    }
}

/// The overlapped sync: buckets launched from the gradient hooks during backward give
/// every rank the share-weighted sum of the ranks' gradients, and the values' sum, step
/// after step (the hooks re-armed each time); a parameter without a gradient in a step is
/// left without one.
#[test]
fn the_overlapped_sync_sums_the_gradients_during_backward() {
    let got = on_two_ranks(|g| {
        let r = g.rank() as f64;
        // Three parameters in 40-byte buckets, cut from the last: {ps[1], ps[2]}, {ps[0]}.
        let ps = [
            Tensor::zeros([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true),
            Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true),
            Tensor::zeros([5], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true),
        ];
        let mut out = Vec::new();
        for step in 0..2 {
            for p in &ps {
                let mut p = p.shallow_clone();
                p.zero_grad();
            }
            let mut sums = Tensor::from_slice(&[r + 1.0, 10.0 * r]);
            g.overlap_begin(&ps, &mut sums, 0.5, 40).unwrap();
            // d loss / d p_k = (rank + 1) * (k + 1) * (step + 1) everywhere; the last
            // parameter takes part only in step 0.
            let c = (r + 1.0) * (step as f64 + 1.0);
            let mut loss = (&ps[0] * c).sum(Kind::Float) + (&ps[1] * (2.0 * c)).sum(Kind::Float);
            if step == 0 {
                loss += (&ps[2] * (3.0 * c)).sum(Kind::Float);
            }
            loss.backward();
            g.overlap_finish().unwrap();
            let grads: Vec<Option<Vec<f64>>> = ps
                .iter()
                .map(|p| {
                    let gr = p.grad();
                    gr.defined().then(|| values(&gr))
                })
                .collect();
            out.push((grads, values(&sums)));
        }
        out
    });
    for per_rank in got {
        for (step, (grads, values)) in per_rank.into_iter().enumerate() {
            // 0.5 * (1 + 2) * (k + 1) * (step + 1).
            let s = 1.5 * (step as f64 + 1.0);
            assert_eq!(grads[0].as_deref(), Some(&[s; 3][..]), "step {step}");
            assert_eq!(grads[1].as_deref(), Some(&[2.0 * s; 4][..]), "step {step}");
            match step {
                0 => assert_eq!(grads[2].as_deref(), Some(&[3.0 * s; 5][..])),
                // Zeroed before the step and unused in it: still zero.
                _ => assert_eq!(grads[2].as_deref(), Some(&[0.0; 5][..])),
            }
            assert_eq!(values, [3.0, 10.0]);
        }
    }
}

/// An NCCL group asked of a build without NCCL is refused in one line, after the store is
/// reached and without a hang; the build says which it is.
#[test]
fn nccl_without_the_feature_is_refused_in_one_line() {
    assert_eq!(uic_c10d::has_nccl(), cfg!(feature = "nccl"));
    if uic_c10d::has_nccl() {
        eprintln!("skipped: this build has NCCL (scripts/check-gpu-build.sh runs its group)");
        return;
    }
    let (_store, port) = hosted_store(1);
    let r = Rendezvous {
        nccl_device: Some(0),
        ..client_of(port, 0, 1)
    };
    let e = Group::connect(&r).unwrap_err().to_string();
    assert!(e.contains("built without NCCL"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}
