//! The scenario's shutdown done by hand, without phaseout: one "cancelled"
//! flag and a "done" flag per stage of this one fixed chain. Built with
//! feature `baseline` only to measure how much flash and RAM phaseout adds;
//! it is what a firmware would hand-write for exactly this chain (no tree,
//! no reports, no waker lists: it polls).

use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};

static CANCELLED: AtomicBool = AtomicBool::new(false);
/// `DONE[i]`: the owner of chain level `i` finished.
static DONE: [AtomicBool; 4] = [const { AtomicBool::new(false) }; 4];

pub struct Phaser {
    level: usize,
}

#[derive(Clone)]
pub struct Token;

impl Phaser {
    pub fn named(_label: &'static str) -> Self {
        Self { level: 0 }
    }

    pub fn child_named(&self, _label: &'static str) -> Result<Phaser, ()> {
        Ok(Phaser {
            level: self.level + 1,
        })
    }

    pub fn is_cancelled(&self) -> bool {
        CANCELLED.load(Ordering::Acquire)
    }

    pub fn is_turn(&self) -> bool {
        self.is_cancelled()
            && DONE
                .get(self.level + 1)
                .is_none_or(|done| done.load(Ordering::Acquire))
    }

    pub fn turn(&self) -> impl Future<Output = ()> + '_ {
        struct Turn<'a>(&'a Phaser);
        impl Future for Turn<'_> {
            type Output = ();
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                if self.0.is_turn() {
                    return Poll::Ready(());
                }
                cx.waker().wake_by_ref(); // no waiter lists: poll again
                Poll::Pending
            }
        }
        Turn(self)
    }

    pub fn token(&self) -> Token {
        Token
    }
}

impl Drop for Phaser {
    fn drop(&mut self) {
        DONE[self.level].store(true, Ordering::Release);
    }
}

impl Token {
    pub fn cancel(&self) {
        CANCELLED.store(true, Ordering::Release);
    }
}
