//! What fills a slot and how it is freed: admission lets a queued task take a free slot (a
//! worker thread waits for one; the remote backend takes any), its progress is published, and
//! [`Core::finish`] does the bookkeeping once, whichever backend ran it. The watchdog's scan
//! for tasks past the time limit is here too: it reads the slots.

use super::*;

impl Core {
    pub(crate) fn set_capacity(&self, slots: usize, threads: usize) {
        let mut inner = self.inner.lock();
        let threads = threads.min(slots);
        if inner.occupancy.slots == slots && inner.occupancy.threads == threads {
            return;
        }
        inner.occupancy.slots = slots;
        inner.occupancy.threads = threads;
        while inner.slots.len() < slots {
            let id = inner.slots.len();
            inner.slots.push(WorkerStats::idle(id));
            inner.running.push(None);
        }
        let Inner { idle, running, .. } = &mut *inner;
        idle.retain(|&slot| slot < slots);
        idle.extend((0..slots).filter(|&slot| running[slot].is_none()));
        drop(inner);
        self.wake(true);
    }

    /// Blocks worker thread `slot` until admission lets it take a task, or returns None at
    /// shutdown.
    pub(crate) fn wait_for_job(&self, slot: usize) -> Option<Job> {
        let mut inner = self.inner.lock();
        loop {
            if inner.shutdown {
                if let Some(stats) = inner.slots.get_mut(slot) {
                    stats.state = WorkerState::Stopped;
                }
                return None;
            }
            if inner.idle.contains(&slot)
                && let Some(job) = self.take(&mut inner, slot)
            {
                return Some(job);
            }
            self.work_ready.wait(&mut inner);
        }
    }

    /// A free slot and the task admission lets take it, if there are both.
    pub(crate) fn take_any(&self) -> Option<(usize, Job)> {
        let mut inner = self.inner.lock();
        if inner.shutdown {
            return None;
        }
        let slot = *inner.idle.first()?;
        let job = self.take(&mut inner, slot)?;
        Some((slot, job))
    }

    pub(super) fn take(&self, inner: &mut Inner, slot: usize) -> Option<Job> {
        if inner.draining {
            return None;
        }
        let limits = self.limits;
        let Inner {
            queue,
            running_by,
            occupancy,
            ..
        } = &mut *inner;
        let job = queue.pop_eligible(|submitter, job| {
            let mine = running_by.get(submitter).copied().unwrap_or_default();
            limits.admits(occupancy, job.cost, mine)
        })?;
        let mine = running_by.entry(job.submitter.clone()).or_default();
        mine.all += 1;
        mine.not_tiny += usize::from(!job.cost.tiny);
        occupancy.busy += 1;
        occupancy.tiny_busy += usize::from(job.cost.tiny);
        inner.idle.remove(&slot);
        inner.running[slot] = Some(Busy {
            task: job.id,
            started: Instant::now(),
            cancel: job.cancel.clone(),
            timed_out: false,
        });
        if inner.queue.len() > 0 {
            // Another idle worker may be allowed what this one left.
            self.work_ready.notify_one();
        }
        let started_at_ms = now_ms();
        let wait_ms = millis(job.queued_at.elapsed());
        let group = inner.group(&job.name);
        group.queued = group.queued.saturating_sub(1);
        group.running += 1;
        group.wait_ms += wait_ms;
        if let Some(live) = inner.live.get_mut(&job.id) {
            live.info.state = TaskState::Running;
            live.info.worker = Some(slot);
            live.info.started_at_ms = Some(started_at_ms);
        }
        inner.slots[slot].begin(job.id, job.name.clone(), started_at_ms);
        // Tells the handle's progress watchers that the task has started.
        job.progress.send_replace(0.0);
        self.emit(
            job.id,
            &job.name,
            &job.submitter,
            EventKind::Started {
                worker: slot,
                wait_ms,
            },
        );
        tracing::debug!(slot, task = %job.id, name = %job.name, input = %job.input, "start");
        Some(job)
    }

    /// Publishes the progress of `job`, running in `slot`.
    pub(crate) fn progress(&self, slot: usize, job: &Job, fraction: f64) {
        job.progress.send_replace(fraction);
        if let Some(live) = self.inner.lock().live.get_mut(&job.id) {
            live.info.progress = fraction;
        }
        self.emit(
            job.id,
            &job.name,
            &job.submitter,
            EventKind::Progress {
                worker: slot,
                fraction,
            },
        );
    }

    /// `job` left `slot` with `outcome` (a result of `output_bytes`) after `compute_ms`, run
    /// where `ran` says (unknown when no worker answered): the figures, the event, the reply.
    pub(crate) fn finish(
        &self,
        slot: usize,
        job: Job,
        outcome: Reply,
        ran: Option<Ran>,
        output_bytes: usize,
        compute_ms: f64,
    ) {
        let mut inner = self.inner.lock();
        let timed_out = inner.running[slot]
            .as_ref()
            .is_some_and(|busy| busy.timed_out)
            .then(|| self.limits.time_limit.map_or(0, |l| l.as_millis() as u64));
        let outcome = why_stopped(outcome, timed_out, inner.shutdown);
        let lost = matches!(outcome, Err(TaskError::Lost(_)));
        let (state, kind) = match &outcome {
            Ok(_) => (
                TaskState::Finished,
                EventKind::Finished {
                    worker: slot,
                    compute_ms,
                    output_bytes,
                },
            ),
            Err(TaskError::Cancelled) => (
                TaskState::Cancelled,
                EventKind::Cancelled { worker: Some(slot) },
            ),
            Err(error) => (
                TaskState::Failed,
                EventKind::Failed {
                    worker: Some(slot),
                    error: error.clone(),
                },
            ),
        };
        if let Some(live) = inner.live.remove(&job.id) {
            let error = outcome.as_ref().err().map(ToString::to_string);
            self.record(&mut inner, &live.info, state, error, output_bytes);
        }
        inner.count_end(&job, state, lost, compute_ms, output_bytes);
        inner.free(slot, &job, compute_ms, output_bytes);
        drop(inner);
        match &outcome {
            Ok(_) => {
                tracing::debug!(slot, task = %job.id, name = %job.name, compute_ms, "end");
            }
            Err(error) => {
                tracing::info!(slot, task = %job.id, name = %job.name, compute_ms, %error, "end");
            }
        }
        self.emit(job.id, &job.name, &job.submitter, kind);
        // A freed slot, and perhaps a submitter back under its cap: the remote backend looks
        // again. A worker thread needs no wake-up: the one that finished looks itself.
        self.slot_ready.notify_one();
        // The submitter may have stopped waiting; the result is then simply dropped.
        let _ = job.reply.send(Ended { outcome, ran });
    }

    /// Raises the cancel flag of every task that has run `limit` or longer, once; the task
    /// then ends with the time limit as its reason. False at shutdown.
    pub(crate) fn stop_overdue(&self, limit: Duration) -> bool {
        let mut inner = self.inner.lock();
        if inner.shutdown {
            return false;
        }
        for busy in inner.running.iter_mut().flatten() {
            if !busy.timed_out && busy.started.elapsed() >= limit {
                busy.timed_out = true;
                busy.cancel.raise();
                tracing::debug!(task = %busy.task, "past the time limit");
            }
        }
        true
    }
}

impl Inner {
    /// Counts a task of `job`'s type that ended in `state` (and whether it was `lost`), in the
    /// totals and in its type's group.
    fn count_end(
        &mut self,
        job: &Job,
        state: TaskState,
        lost: bool,
        compute_ms: f64,
        output_bytes: usize,
    ) {
        match state {
            TaskState::Finished => self.totals.finished += 1,
            TaskState::Cancelled => self.totals.cancelled += 1,
            _ => self.totals.failed += 1,
        }
        self.totals.lost += u64::from(lost);
        let group = self.group(&job.name);
        group.running = group.running.saturating_sub(1);
        group.compute_ms += compute_ms;
        group.sample(compute_ms);
        group.output_bytes += output_bytes as u64;
        match state {
            TaskState::Finished => group.finished += 1,
            TaskState::Cancelled => group.cancelled += 1,
            _ => group.failed += 1,
        }
        group.lost += u64::from(lost);
    }

    /// Frees `slot`, which ran `job`: its submitter's count of running tasks, the occupancy
    /// admission reads, and the slot's own figures.
    fn free(&mut self, slot: usize, job: &Job, compute_ms: f64, output_bytes: usize) {
        if let Some(mine) = self.running_by.get_mut(&job.submitter) {
            mine.all -= 1;
            mine.not_tiny -= usize::from(!job.cost.tiny);
            if mine.all == 0 {
                self.running_by.remove(&job.submitter);
            }
        }
        self.occupancy.busy -= 1;
        self.occupancy.tiny_busy -= usize::from(job.cost.tiny);
        self.running[slot] = None;
        if slot < self.occupancy.slots {
            self.idle.insert(slot);
        }
        self.slots[slot].end(compute_ms, output_bytes);
    }
}
