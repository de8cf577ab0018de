create table if not exists t(x);
