"""A pump's accuracy measured the way IEC 60601-2-24 describes it: a balance read every
30 s, the start-up curve and the trumpet curves (``analysis``), the CSV of readings
(``readings``), plots and report (``report``), and the run that drives a pump through the
safety process while it records the balance (``run``)."""
