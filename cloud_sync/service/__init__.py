"""The running cloud: the shared holder of the account adapters, the one-shot syncs, the schedule of
jobs, and `CloudService`, which wires the database, the site link, the stock sender, the jobs and the web
app together (it sits on the top floor, beside web and cli)."""
