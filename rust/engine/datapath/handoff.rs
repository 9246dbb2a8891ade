// SPDX-License-Identifier: GPL-2.0

//! Giving an incoming packet object back to the receive work without a
//! lock.
//!
//! Most drivers complete a packet inside their ProcessPacket callback.
//! Releasing it the general way takes the receive state's lock (the
//! outstanding count, the object pool) once per packet. Instead, while the
//! receive work delivers a packet it marks the object in its channel's
//! [`Catch`]; whoever completes that object while the mark stands (inside
//! the callback, or another CPU the driver handed it to) swaps the mark
//! for "given" and leaves the object to the receive work, which reuses it
//! for a later packet and settles the count in the critical section it
//! takes for the next batch anyway. An object completed at any other time
//! is not marked and takes the locked path.
//!
//! The mark is the object's address; "given" is the giver's pointer to it
//! with bit 0 set (objects are at least 2-aligned), so the receive work
//! rebuilds the box from a pointer that owns it. Should the delivered
//! object be freed during the callback and its memory become another
//! object of the same channel that is completed before the delivery ends,
//! the receive work gets that object instead: still one object given up
//! by its owner and taken over once, and one completion counted once.

use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{
    AtomicPtr,
    Ordering, //
};
use kernel::prelude::*;

/// One channel's mark: null, the object being delivered, or that object
/// given back (tagged).
pub(crate) struct Catch<T> {
    mark: AtomicPtr<T>,
    _owns: PhantomData<KBox<T>>,
}

/// The tag of a given-back object.
const GIVEN: usize = 1;

impl<T> Catch<T> {
    const ALIGNED: () = assert!(core::mem::align_of::<T>() > GIVEN);

    pub(crate) const fn new() -> Self {
        let () = Self::ALIGNED;
        Self {
            mark: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// The receive work is about to deliver `object`: what to pass to
    /// [`Self::settle`] afterwards.
    pub(crate) fn expect(&self, object: &T) -> *const T {
        let object = ptr::from_ref(object);
        // Release: pairs with the giver's compare-exchange, which may run
        // on a CPU the driver handed the packet to.
        self.mark.store(object.cast_mut(), Ordering::Release);
        object
    }

    /// The delivery of `object` ended: the object if it was given back
    /// meanwhile (the caller owns it again), else `None` (the driver has
    /// it; a later completion takes the locked path).
    pub(crate) fn settle(&self, object: *const T) -> Option<KBox<T>> {
        // Acquire: the giver's writes to the object are visible.
        let mark = self.mark.swap(ptr::null_mut(), Ordering::Acquire);
        if mark.addr() != object.addr() | GIVEN {
            return None;
        }
        // SAFETY: only `give` tags a mark, with the pointer it got from
        // `KBox::into_raw` for the object at `object`'s address, whose
        // ownership it gave up: that pointer, untagged, owns the box, and
        // the swap above took it out of the mark, so it is rebuilt once.
        Some(unsafe { KBox::from_raw(mark.map_addr(|a| a & !GIVEN)) })
    }

    /// Gives `object` back to the receive work if it is being delivered
    /// right now (`catch` finds its channel's mark); otherwise returns it.
    pub(crate) fn give(
        object: KBox<T>,
        catch: impl FnOnce(&T) -> &Catch<T>,
    ) -> core::result::Result<(), KBox<T>> {
        let raw = KBox::into_raw(object);
        // SAFETY: `raw` owns a live object (from `into_raw` just above). The
        // borrow cannot leave `catch` (any lifetime), and what `catch`
        // returns is not used after the compare-exchange.
        let mark = &catch(unsafe { &*raw }).mark;
        let given = raw.map_addr(|a| a | GIVEN);
        // The mark's channel outlives the exchange: its receive work holds
        // a reference to it for as long as the mark names an object.
        if mark
            .compare_exchange(raw, given, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(());
        }
        // SAFETY: not given: `raw` still owns the box made into it above.
        Err(unsafe { KBox::from_raw(raw) })
    }
}

#[cfg(kmcl_kunit)]
#[kunit_tests(kmcl_engine_handoff)]
mod tests {
    use super::*;

    fn object(v: u64) -> Result<KBox<u64>> {
        Ok(KBox::new(v, GFP_KERNEL)?)
    }

    #[test]
    fn an_object_given_during_its_delivery_comes_back_once() -> Result {
        // `give` finds a catch through its object: here, any object.
        static CATCH: Catch<u64> = Catch::new();
        let catch = &CATCH;
        let b = object(7)?;
        let delivering = catch.expect(&b);
        assert!(Catch::give(b, |_| catch).is_ok());
        let back = catch.settle(delivering).ok_or(EINVAL)?;
        assert_eq!(*back, 7);
        assert_eq!(ptr::from_ref::<u64>(&back), delivering);
        // Settled: the mark is clear, nothing comes back twice.
        assert!(catch.settle(delivering).is_none());
        Ok(())
    }

    #[test]
    fn an_object_not_being_delivered_stays_with_its_giver() -> Result {
        static CATCH: Catch<u64> = Catch::new();
        let catch = &CATCH;
        // Nothing marked.
        let b = Catch::give(object(1)?, |_| catch).err().ok_or(EINVAL)?;
        assert_eq!(*b, 1);
        // Another object marked.
        let other = object(2)?;
        let delivering = catch.expect(&other);
        let b = Catch::give(b, |_| catch).err().ok_or(EINVAL)?;
        assert_eq!(*b, 1);
        assert!(catch.settle(delivering).is_none());
        // Marked, but the delivery ended before the giver came.
        let delivering = catch.expect(&b);
        assert!(catch.settle(delivering).is_none());
        let b = Catch::give(b, |_| catch).err().ok_or(EINVAL)?;
        assert_eq!((*b, *other), (1, 2));
        Ok(())
    }
}
