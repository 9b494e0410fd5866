//! The physical limit for erlkaf's benchmarks: raw librdkafka (rdkafka-sys), no BEAM.
//!
//! `erlkaf-baseline produce --bootstrap B --topic T --messages N --size S [--linger MS]
//!  [--acks A] [--batch-num N] [--payloads K]`: produces N messages of S bytes (K static payloads in turn, no copy,
//! like erlkaf's zero-copy path), counts every delivery report on a poller thread (event
//! API, as erlkaf does) and prints one JSON line. Keyless messages are partitioned as
//! erlkaf does it (erlkaf_core::partitioner: one sticky decision per produce_batch run);
//! `--partitioner librdkafka` leaves it to librdkafka (a decision per message).
//! `erlkaf-baseline latency ... --rate R`: produces at R msg/s with linger 0 and prints
//! delivery-report latency percentiles.
//! `erlkaf-baseline consume --bootstrap B --topic T --messages N`: reads N messages with a
//! consumer group from the beginning and prints the throughput.
//! `erlkaf-baseline idle --bootstrap B --topic T --messages N`: a consumer group on an idle
//! topic from its end; N messages produced 50 ms apart (linger 0), each one's time from
//! produce to the consumer's poll; prints the percentiles.

use rdkafka_sys as rd;
use std::collections::HashMap;
use erlkaf_core::partitioner::Partitioner;
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn args() -> (String, HashMap<String, String>) {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| usage());
    let mut map = HashMap::new();
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        map.insert(k.trim_start_matches("--").to_string(), v);
    }
    (mode, map)
}

fn usage() -> ! {
    eprintln!("usage: erlkaf-baseline produce|latency|consume|idle --bootstrap B --topic T --messages N [--size S] [--linger MS] [--acks A] [--rate R] [--batch N] [--threads T] [--payloads K] [--partitioner erlkaf|librdkafka] [--alloc system|mimalloc]");
    std::process::exit(2)
}

fn get<T: std::str::FromStr>(m: &HashMap<String, String>, k: &str, default: T) -> T {
    m.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Client(*mut rd::rd_kafka_t);
unsafe impl Send for Client {}
unsafe impl Sync for Client {}

fn client(kind: rd::rd_kafka_type_t, props: &[(&str, String)], events: i32) -> Client {
    unsafe {
        let conf = rd::rd_kafka_conf_new();
        let mut err = [0 as c_char; 512];
        for (k, v) in props {
            let (k, v) = (CString::new(*k).unwrap(), CString::new(v.as_str()).unwrap());
            if rd::rd_kafka_conf_set(conf, k.as_ptr(), v.as_ptr(), err.as_mut_ptr(), err.len())
                != rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK
            {
                panic!("{}", CStr::from_ptr(err.as_ptr()).to_string_lossy());
            }
        }
        rd::rd_kafka_conf_set_events(conf, events);
        let rk = rd::rd_kafka_new(kind, conf, err.as_mut_ptr(), err.len());
        assert!(!rk.is_null(), "{}", CStr::from_ptr(err.as_ptr()).to_string_lossy());
        Client(rk)
    }
}

/// Drains delivery reports; `on_report` gets the opaque of each.
fn poller(rk: Arc<Client>, stop: Arc<AtomicBool>, mut on_report: impl FnMut(usize, bool) + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || unsafe {
        let q = rd::rd_kafka_queue_get_main(rk.0);
        let mut msgs: Vec<*const rd::rd_kafka_message_t> = Vec::new();
        while !stop.load(Ordering::Acquire) {
            let ev = rd::rd_kafka_queue_poll(q, 100);
            if ev.is_null() {
                continue;
            }
            if rd::rd_kafka_event_type(ev) == rd::RD_KAFKA_EVENT_DR {
                let n = rd::rd_kafka_event_message_count(ev);
                msgs.resize(n, std::ptr::null());
                let got = rd::rd_kafka_event_message_array(ev, msgs.as_mut_ptr(), n);
                for &m in &msgs[..got] {
                    on_report((*m)._private as usize, (*m).err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
                }
            }
            rd::rd_kafka_event_destroy(ev);
        }
        rd::rd_kafka_queue_destroy(q);
    })
}

fn produce_one(rk: *mut rd::rd_kafka_t, rkt: *mut rd::rd_kafka_topic_t, payload: &[u8], opaque: usize) -> rd::rd_kafka_resp_err_t {
    use rd::rd_kafka_vtype_t as V;
    let vus = [
        rd::rd_kafka_vu_t { vtype: V::RD_KAFKA_VTYPE_RKT, u: rd::rd_kafka_vu_s__bindgen_ty_1 { rkt } },
        rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_VALUE,
            u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr: payload.as_ptr() as *mut _, size: payload.len() },
            },
        },
        rd::rd_kafka_vu_t { vtype: V::RD_KAFKA_VTYPE_OPAQUE, u: rd::rd_kafka_vu_s__bindgen_ty_1 { ptr: opaque as *mut _ } },
    ];
    unsafe {
        let e = rd::rd_kafka_produceva(rk, vus.as_ptr(), vus.len());
        if e.is_null() {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        } else {
            let c = rd::rd_kafka_error_code(e);
            rd::rd_kafka_error_destroy(e);
            c
        }
    }
}

fn producer_props(m: &HashMap<String, String>, linger: &str) -> Vec<(&'static str, String)> {
    vec![
        ("bootstrap.servers", m.get("bootstrap").cloned().unwrap_or_else(|| usage())),
        ("linger.ms", m.get("linger").cloned().unwrap_or_else(|| linger.into())),
        ("acks", m.get("acks").cloned().unwrap_or_else(|| "1".into())),
        ("queue.buffering.max.messages", get::<u64>(m, "queue-messages", 500000).to_string()),
        ("batch.num.messages", get::<u64>(m, "batch-num", 10000).to_string()),
        // Room for the 1 MiB payloads of the size sweep (erlkaf's bench sets the same).
        ("message.max.bytes", "2000000".to_string()),
    ]
}

fn topic(rk: &Client, m: &HashMap<String, String>) -> *mut rd::rd_kafka_topic_t {
    let t = CString::new(m.get("topic").cloned().unwrap_or_else(|| usage())).unwrap();
    unsafe { rd::rd_kafka_topic_new(rk.0, t.as_ptr(), std::ptr::null_mut()) }
}

/// A full queue is waited out (200 us), and counted.
fn wait_full(waits: &AtomicU64) {
    waits.fetch_add(1, Ordering::Relaxed);
    std::thread::sleep(Duration::from_micros(200));
}

/// The producer's topic with erlkaf's partitioner (erlkaf_core::partitioner, as erlkaf
/// installs it) and the properties for it; `--partitioner librdkafka`: librdkafka's own,
/// deciding per message.
fn partitioned_producer(m: &HashMap<String, String>) -> (Arc<Client>, *mut rd::rd_kafka_topic_t, Option<Box<Partitioner>>) {
    let mut props = erlkaf_core::config::Properties::new(producer_props(m, "5"));
    // With erlkaf's partitioner: the properties as take_over leaves them (librdkafka's
    // sticky logic off), as erlkaf's producer gives them.
    let linger_us = (m.get("partitioner").map(String::as_str) != Some("librdkafka")).then(|| erlkaf_core::partitioner::take_over(&mut props));
    let props: Vec<(&str, String)> = props.0.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let rk = Arc::new(client(rd::rd_kafka_type_t::RD_KAFKA_PRODUCER, &props, rd::RD_KAFKA_EVENT_DR));
    match linger_us {
        None => {
            let rkt = topic(&rk, m);
            (rk, rkt, None)
        }
        Some(us) => {
            let t = CString::new(m.get("topic").cloned().unwrap_or_else(|| usage())).unwrap();
            // SAFETY: live producer handle.
            let (rkt, partitioner) = unsafe { Partitioner::default_topic(rk.0, &t, us) };
            (rk, rkt, Some(partitioner))
        }
    }
}

fn produce(m: &HashMap<String, String>) {
    let n: u64 = get(m, "messages", 1_000_000);
    let size: usize = get(m, "size", 100);
    // (The partitioner's state lives until the client is destroyed, below.)
    let (rk, rkt, _partitioner) = partitioned_producer(m);
    // --payloads K: K payloads of their own, taken in turn (erlkaf's bench produces from a
    // list of 1000 binaries, each an allocation of its own: the same memory to read).
    let payloads: Vec<Vec<u8>> = (0..get::<usize>(m, "payloads", 1).max(1)).map(|_| vec![b'x'; size]).collect();
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (d2, e2) = (done.clone(), errors.clone());
    let th = poller(rk.clone(), stop.clone(), move |_, ok| {
        d2.fetch_add(1, Ordering::Relaxed);
        if !ok {
            e2.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Waits on a full queue: none means the producing thread set the pace.
    let full_waits = AtomicU64::new(0);
    let cpu0 = erlkaf_core::cputime::process_ns();
    let t0 = Instant::now();
    // The producing thread's waits (voluntary context switches: a lock librdkafka's other
    // threads held, a full queue's sleep), as erlkaf's bench counts its produce calls'.
    let waits0 = erlkaf_core::cputime::thread_waits();
    let mut i = 0;
    // --batch N: rd_kafka_produce_batch, N messages a call (to compare with produceva per
    // message; on the mock both reach the same rate within noise).
    let batch: u64 = get(m, "batch", 0);
    if batch > 0 {
        let mut msgs: Vec<rd::rd_kafka_message_t> = Vec::with_capacity(batch as usize);
        while i < n {
            let k = batch.min(n - i);
            msgs.clear();
            for j in 0..k {
                // SAFETY: all-zero is a valid rd_kafka_message_t (null pointers, no error).
                let mut msg: rd::rd_kafka_message_t = unsafe { std::mem::zeroed() };
                let payload = &payloads[(i + j) as usize % payloads.len()];
                msg.payload = payload.as_ptr() as *mut _;
                msg.len = payload.len();
                msg._private = (i + j) as usize as *mut _;
                msgs.push(msg);
            }
            // SAFETY: live topic; the payload outlives the run (reports are awaited below).
            let good = unsafe { erlkaf_core::partitioner::produce_batch(rkt, -1, &mut msgs) } as u64;
            i += good;
            if good < k {
                // librdkafka refuses from the first failure on: a full queue is waited out.
                match msgs[good as usize].err {
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__QUEUE_FULL => wait_full(&full_waits),
                    e => panic!("produce failed: {e:?}"),
                }
            }
        }
    }
    let waits = erlkaf_core::cputime::thread_waits() - waits0;
    // --threads T: T threads produce n/T messages each (what two schedulers producing at
    // once cost librdkafka, against one thread).
    let threads: u64 = get(m, "threads", 1).max(1);
    let per = (n - i) / threads;
    let rkt_addr = rkt as usize;
    std::thread::scope(|sc| {
        for t in 0..threads {
            let (rk, payloads, full_waits) = (&rk, &payloads, &full_waits);
            sc.spawn(move || {
                let mut j = 0;
                while j < per {
                    let k = (t * per + j) as usize;
                    match produce_one(rk.0, rkt_addr as *mut _, &payloads[k % payloads.len()], k) {
                        rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => j += 1,
                        rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__QUEUE_FULL => wait_full(full_waits),
                        e => panic!("produce failed: {e:?}"),
                    }
                }
            });
        }
    });
    i += per * threads;
    let n = i;
    while done.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_micros(200));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = erlkaf_core::cputime::process_ns().saturating_sub(cpu0);
    stop.store(true, Ordering::Release);
    th.join().unwrap();
    println!(
        "{{\"mode\":\"produce\",\"messages\":{n},\"size\":{size},\"seconds\":{secs:.4},\"msg_per_s\":{:.0},\"mb_per_s\":{:.2},\"errors\":{},\"queue_full_waits\":{},\"producer_waits\":{waits},\"cpu_ns_per_msg\":{:.0}}}",
        n as f64 / secs,
        n as f64 * size as f64 / secs / 1e6,
        errors.load(Ordering::Relaxed),
        full_waits.load(Ordering::Relaxed),
        cpu as f64 / n.max(1) as f64
    );
    unsafe {
        rd::rd_kafka_topic_destroy(rkt);
        rd::rd_kafka_destroy(rk.0);
    }
}

fn latency(m: &HashMap<String, String>) {
    let n: u64 = get(m, "messages", 20000);
    let rate: u64 = get(m, "rate", 10000);
    let size: usize = get(m, "size", 100);
    let rk = Arc::new(client(rd::rd_kafka_type_t::RD_KAFKA_PRODUCER, &producer_props(m, "0"), rd::RD_KAFKA_EVENT_DR));
    let rkt = topic(&rk, m);
    let payload = vec![b'x'; size];
    let base = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let lat = Arc::new(parking_lot::Mutex::new(Vec::with_capacity(n as usize)));
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, l2) = (sent.clone(), lat.clone());
    let warm = Arc::new(AtomicBool::new(false));
    let w2 = warm.clone();
    let th = poller(rk.clone(), stop.clone(), move |i, _| {
        if i as u64 >= n {
            w2.store(true, Ordering::Release);
            return;
        }
        let now = base.elapsed().as_micros() as u64;
        l2.lock().push(now - s2[i].load(Ordering::Relaxed));
    });
    // Warm up (connection, metadata): steady-state latency is the figure; erlkaf's bench
    // warms up the same way.
    while produce_one(rk.0, rkt, &payload, n as usize) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        std::thread::sleep(Duration::from_micros(100));
    }
    while !warm.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = base.elapsed();
    // Paced by sleeping to each message's due time (no spinning: on 2 cores a spinning
    // pacer would take the CPU the client's threads need). erlkaf's bench paces the same.
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    for i in 0..n {
        let due = start + interval * i as u32;
        let now = base.elapsed();
        if now < due {
            std::thread::sleep(due - now);
        }
        sent[i as usize].store(base.elapsed().as_micros() as u64, Ordering::Relaxed);
        while produce_one(rk.0, rkt, &payload, i as usize) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    while (lat.lock().len() as u64) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Release);
    th.join().unwrap();
    let mut l = lat.lock().clone();
    l.sort_unstable();
    let p = |q: f64| l[((l.len() as f64 - 1.0) * q) as usize];
    println!(
        "{{\"mode\":\"latency\",\"messages\":{n},\"rate\":{rate},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        p(0.5),
        p(0.99),
        l[l.len() - 1]
    );
    unsafe {
        rd::rd_kafka_topic_destroy(rkt);
        rd::rd_kafka_destroy(rk.0);
    }
}

/// A consumer of the group `baseline-<what>-<pid>` subscribed to the topic, reading from
/// `reset` (earliest or latest) with erlkaf's consumer settings.
fn subscribed_consumer(m: &HashMap<String, String>, what: &str, reset: &str) -> Client {
    let props = vec![
        ("bootstrap.servers", m.get("bootstrap").cloned().unwrap_or_else(|| usage())),
        ("group.id", format!("baseline-{what}-{}", std::process::id())),
        ("auto.offset.reset", reset.to_string()),
        ("enable.auto.offset.store", "false".to_string()),
        ("fetch.wait.max.ms", "10".to_string()),
        // erlkaf's consumer default (librdkafka's 1000 ms stalls a consumer working
        // through a backlog): the same configuration on both sides.
        ("fetch.queue.backoff.ms", "10".to_string()),
        // As erlkaf's bench: tansu makes each group join wait half the session timeout.
        ("session.timeout.ms", "6000".to_string()),
    ];
    let rk = client(rd::rd_kafka_type_t::RD_KAFKA_CONSUMER, &props, 0);
    unsafe {
        rd::rd_kafka_poll_set_consumer(rk.0);
        let tpl = rd::rd_kafka_topic_partition_list_new(1);
        let t = CString::new(m.get("topic").cloned().unwrap_or_else(|| usage())).unwrap();
        rd::rd_kafka_topic_partition_list_add(tpl, t.as_ptr(), -1);
        rd::rd_kafka_subscribe(rk.0, tpl);
        rd::rd_kafka_topic_partition_list_destroy(tpl);
    }
    rk
}

fn consume(m: &HashMap<String, String>) {
    let n: u64 = get(m, "messages", 1_000_000);
    let rk = subscribed_consumer(m, "consume", "earliest");
    unsafe {
        let mut got = 0u64;
        let mut bytes = 0u64;
        let mut t0: Option<Instant> = None;
        // Stops at n messages, or after 5 s without any (the broker may keep fewer); the
        // first may take longer (the group's join).
        let mut last = Instant::now();
        let mut t_last = Instant::now();
        let quiet = |got: u64| Duration::from_secs(if got == 0 { 30 } else { 5 });
        while got < n && last.elapsed() < quiet(got) {
            let msg = rd::rd_kafka_consumer_poll(rk.0, 100);
            if msg.is_null() {
                continue;
            }
            last = Instant::now();
            if (*msg).err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                t0.get_or_insert_with(Instant::now);
                got += 1;
                bytes += (*msg).len as u64;
                t_last = Instant::now();
                // Store like erlkaf does (after "processing").
                rd::rd_kafka_offset_store((*msg).rkt, (*msg).partition, (*msg).offset);
            }
            rd::rd_kafka_message_destroy(msg);
        }
        let secs = t0.map(|t| t_last.duration_since(t).as_secs_f64()).unwrap_or(0.0);
        println!(
            "{{\"mode\":\"consume\",\"messages\":{got},\"seconds\":{secs:.4},\"msg_per_s\":{:.0},\"mb_per_s\":{:.2}}}",
            got as f64 / secs,
            bytes as f64 / secs / 1e6
        );
        rd::rd_kafka_consumer_close(rk.0);
        rd::rd_kafka_destroy(rk.0);
    }
}

/// The idle-partition figure of erlkaf's bench, raw: the consumer's thread polls and
/// stamps each message (its value is its sequence number) when the poll returns it.
fn idle(m: &HashMap<String, String>) {
    // (At least one: the figures are percentiles of what was measured.)
    let n: usize = get(m, "messages", 20).max(1);
    let rk = Arc::new(subscribed_consumer(m, "idle", "latest"));
    let base = Instant::now();
    let got: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let (rk2, got2, stop2) = (rk.clone(), got.clone(), stop.clone());
    let th = std::thread::spawn(move || unsafe {
        while !stop2.load(Ordering::Acquire) {
            let msg = rd::rd_kafka_consumer_poll(rk2.0, 100);
            if msg.is_null() {
                continue;
            }
            let now = base.elapsed().as_micros() as u64;
            if (*msg).err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let v = std::slice::from_raw_parts((*msg).payload as *const u8, (*msg).len);
                if let Some(slot) = std::str::from_utf8(v).ok().and_then(|v| v.parse::<usize>().ok()).and_then(|i| got2.get(i)) {
                    slot.store(now.max(1), Ordering::Release);
                }
                rd::rd_kafka_offset_store((*msg).rkt, (*msg).partition, (*msg).offset);
            }
            rd::rd_kafka_message_destroy(msg);
        }
    });
    // Assigned, then a second (erlkaf's bench waits the same): the fetch position is known.
    let assigned = || unsafe {
        let mut tpl = std::ptr::null_mut();
        let ok = rd::rd_kafka_assignment(rk.0, &mut tpl) == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && (*tpl).cnt > 0;
        if !tpl.is_null() {
            rd::rd_kafka_topic_partition_list_destroy(tpl);
        }
        ok
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !assigned() {
        assert!(Instant::now() < deadline, "no partition assigned");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    // (No delivery reports: none are asked for, so none are queued.)
    let p = client(rd::rd_kafka_type_t::RD_KAFKA_PRODUCER, &producer_props(m, "0"), 0);
    let rkt = topic(&p, m);
    // (Not copied by librdkafka: they outlive the producer.)
    let payloads: Vec<Vec<u8>> = (0..n).map(|i| i.to_string().into_bytes()).collect();
    let mut lat = Vec::with_capacity(n);
    for (i, payload) in payloads.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(50));
        let t0 = base.elapsed().as_micros() as u64;
        while produce_one(p.0, rkt, payload, i) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            std::thread::sleep(Duration::from_micros(100));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while got[i].load(Ordering::Acquire) == 0 {
            assert!(Instant::now() < deadline, "message {i} not consumed");
            std::thread::sleep(Duration::from_micros(20));
        }
        lat.push(got[i].load(Ordering::Acquire) - t0);
    }
    stop.store(true, Ordering::Release);
    th.join().unwrap();
    lat.sort_unstable();
    let q = |f: f64| lat[((lat.len() as f64 - 1.0) * f) as usize];
    unsafe {
        rd::rd_kafka_flush(p.0, 5000);
        rd::rd_kafka_topic_destroy(rkt);
        rd::rd_kafka_destroy(p.0);
        rd::rd_kafka_consumer_close(rk.0);
        rd::rd_kafka_destroy(rk.0);
    }
    println!("{{\"mode\":\"idle\",\"messages\":{n},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}", q(0.5), q(0.99), lat[n - 1]);
}

fn main() {
    let (mode, m) = args();
    // The raw baseline runs on glibc's malloc unless `--alloc mimalloc` (erlkaf's heap).
    let mimalloc = m.get("alloc").map(String::as_str) == Some("mimalloc");
    erlkaf_core::heap::use_mimalloc(mimalloc);
    if mimalloc {
        // Freed memory goes back to the OS as in erlkaf (on a thread of its own).
        erlkaf_core::heap::start_purger();
    }
    match mode.as_str() {
        "produce" => produce(&m),
        "latency" => latency(&m),
        "consume" => consume(&m),
        "idle" => idle(&m),
        _ => usage(),
    }
}
