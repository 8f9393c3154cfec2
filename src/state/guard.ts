/**
 * The state's error boundary (DESIGN.md §9): whatever a store raises, from any method, at any time (a sync read
 * of the SQLite baseline, a queue write, a page of an async generator, a lock query on PostgreSQL's own
 * session), reaches the caller as `toTyped(error)`: a typed error with its exit code and advice. Built around the
 * whole object rather than method by method, so that a method added later is covered without anyone
 * remembering to.
 *
 * What a method returns is guarded too when it is itself a service (the queue, the baseline view, an async
 * generator): it talks to the same database. Plain data (rows, summaries) is returned as it is.
 */
export function guardState<T extends object>(store: T, toTyped: (error: unknown) => unknown): T {
  return guard(store, toTyped, new WeakMap());
}

function guard<T extends object>(target: T, toTyped: (error: unknown) => unknown, seen: WeakMap<object, object>): T {
  const known = seen.get(target);
  if (known) return known as T;
  const methods = new Map<PropertyKey, unknown>();
  const proxy: T = new Proxy(target, {
    get(object, property) {
      // The target as receiver: its getters and methods see the real object, not the proxy.
      const value: unknown = Reflect.get(object, property, object);
      if (typeof value !== 'function') return value;
      let wrapped = methods.get(property);
      if (wrapped === undefined || (wrapped as { original?: unknown }).original !== value) {
        const method = value as (...args: unknown[]) => unknown;
        wrapped = Object.assign(
          (...args: unknown[]): unknown => {
            let result: unknown;
            try {
              result = method.apply(object, args);
            } catch (error) {
              throw toTyped(error);
            }
            return settle(result);
          },
          { original: value },
        );
        methods.set(property, wrapped);
      }
      return wrapped;
    },
  });
  seen.set(target, proxy);

  function settle(result: unknown): unknown {
    if (result === target) return proxy;
    if (result instanceof Promise) {
      return result.catch((error: unknown) => {
        throw toTyped(error);
      });
    }
    return isService(result) ? guard(result, toTyped, seen) : result;
  }
  return proxy;
}

/** An object whose methods reach the database (an iterator, a queue, a view), as opposed to plain data. */
function isService(value: unknown): value is object {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  if (value instanceof Date || value instanceof Map || value instanceof Set || ArrayBuffer.isView(value) || value instanceof RegExp) return false;
  if (typeof (value as { next?: unknown }).next === 'function') return true;
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return true;
  return Object.values(value).some((field) => typeof field === 'function');
}
