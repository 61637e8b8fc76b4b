use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn fresh(g: Grant) -> Seat {
    assert!(g.handed.is_none(), "expected a fresh seat");
    g.seat
}

#[tokio::test]
async fn seats_up_to_the_cap_then_the_queue_is_served_in_order() {
    let room = Room::new(Some(2), Duration::from_secs(1));
    let a = fresh(room.acquire(1, soon()).await.unwrap());
    let _b = fresh(room.acquire(1, soon()).await.unwrap());
    assert_eq!(room.in_use(), 2);
    let r1 = room.clone();
    let first = tokio::spawn(async move { r1.acquire(7, soon()).await.map(fresh) });
    while room.queued() < 1 {
        tokio::task::yield_now().await;
    }
    let r2 = room.clone();
    let second = tokio::spawn(async move { r2.acquire(8, soon()).await.map(fresh) });
    while room.queued() < 2 {
        tokio::task::yield_now().await;
    }
    assert!(room.wanted());
    assert_eq!(room.next_key(), Some(7));
    drop(a);
    let first = first.await.unwrap().unwrap();
    assert_eq!(
        room.next_key(),
        Some(8),
        "the first in line was served first"
    );
    assert_eq!(room.in_use(), 2, "a seat given on is still taken");
    drop(first);
    let second = second.await.unwrap().unwrap();
    drop(second);
    assert_eq!(room.in_use(), 1);
    assert!(!room.wanted());
}

#[tokio::test]
async fn a_connection_passes_only_to_a_waiter_of_the_same_key() {
    let room = Room::new(Some(1), Duration::from_secs(1));
    let seat = fresh(room.acquire(1, soon()).await.unwrap());
    let r = room.clone();
    let waiter = tokio::spawn(async move { r.acquire(2, soon()).await });
    while room.queued() < 1 {
        tokio::task::yield_now().await;
    }
    // Another key waits first: the connection comes back to be closed, then the seat goes.
    let (seat, conn) = seat.pass(1, Box::new(41u32)).unwrap_err();
    assert_eq!(conn.downcast::<u32>().ok().map(|b| *b), Some(41));
    assert!(!waiter.is_finished());
    drop(seat);
    let seat = fresh(waiter.await.unwrap().unwrap());

    let r = room.clone();
    let waiter = tokio::spawn(async move { r.acquire(2, soon()).await });
    while room.queued() < 1 {
        tokio::task::yield_now().await;
    }
    assert!(seat.pass(2, Box::new(42u32)).is_ok());
    let Grant {
        seat: _held,
        handed,
    } = waiter.await.unwrap().unwrap();
    let conn = handed.expect("expected the connection");
    assert_eq!(conn.downcast::<u32>().ok().map(|b| *b), Some(42));
    assert_eq!(room.stats.handovers.load(Ordering::Relaxed), 1);
    assert_eq!(room.in_use(), 1);
}

#[tokio::test]
async fn a_wait_past_the_deadline_fails_and_leaves_the_queue() {
    let room = Room::new(Some(1), Duration::from_secs(1));
    let _seat = fresh(room.acquire(1, soon()).await.unwrap());
    let deadline = Instant::now() + Duration::from_millis(50);
    assert!(room.acquire(1, deadline).await.is_err());
    assert_eq!(room.queued(), 0);
    assert_eq!(room.stats.timeouts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_waiter_that_gave_up_is_skipped() {
    let room = Room::new(Some(1), Duration::from_secs(1));
    let seat = fresh(room.acquire(1, soon()).await.unwrap());
    let r = room.clone();
    let gone = tokio::spawn(async move { r.acquire(1, soon()).await.map(|_| ()) });
    while room.queued() < 1 {
        tokio::task::yield_now().await;
    }
    let r = room.clone();
    let stays = tokio::spawn(async move { r.acquire(1, soon()).await.map(fresh) });
    while room.queued() < 2 {
        tokio::task::yield_now().await;
    }
    gone.abort();
    let _ = gone.await;
    drop(seat);
    let seat = stays.await.unwrap().unwrap();
    drop(seat);
    assert_eq!(room.in_use(), 0);
}

#[tokio::test]
async fn without_a_known_cap_nobody_waits() {
    let room = Room::new(None, Duration::from_secs(1));
    let seats: Vec<_> = futures_seats(&room, 10).await;
    assert_eq!(room.in_use(), 10);
    drop(seats);
    assert_eq!(room.in_use(), 0);
    room.learned(3);
    assert_eq!(room.capacity(), 3);
    let configured = Room::new(Some(5), Duration::from_secs(1));
    configured.learned(3);
    assert_eq!(configured.capacity(), 5, "the config wins over the server");
}

async fn futures_seats(room: &Arc<Room>, n: usize) -> Vec<Seat> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(fresh(room.acquire(1, soon()).await.unwrap()));
    }
    out
}

#[tokio::test]
async fn the_usher_asks_the_session_quiet_the_longest() {
    let room = Room::new(Some(1), Duration::from_millis(300));
    tokio::spawn(usher(room.clone()));
    let older = Arc::new(Quiet::default());
    let newer = Arc::new(Quiet::default());
    let working = Arc::new(Quiet::default());
    older.rest(false);
    tokio::time::sleep(Duration::from_millis(5)).await;
    newer.rest(true);
    room.enter(1, older.clone());
    room.enter(2, newer.clone());
    room.enter(3, working.clone());
    let _seat = fresh(room.acquire(1, soon()).await.unwrap());
    let r = room.clone();
    let waiter = tokio::spawn(async move { r.acquire(1, soon()).await.map(|_| ()) });
    // The newer one may go at once; the older one only after park_idle_after. Once both
    // may, the one at rest the longest goes first.
    tokio::time::timeout(Duration::from_secs(5), newer.ask.notified())
        .await
        .expect("the session that may go at once is asked first");
    newer.busy();
    room.call.notify_one();
    tokio::time::timeout(Duration::from_secs(5), older.ask.notified())
        .await
        .expect("then the one quiet long enough");
    waiter.abort();
}
